"""Role checks shared by every API view and page.

An administrator is an active staff account. What an administrator may do is decided by the
Django permissions it holds, its own or its groups' (a superuser holds them all): the grants the
Django admin checks, so /admin/ and the admin API always agree on who may change what. The
"Workgate administrators" group (accounts migration 0002) holds every permission the admin API
asks for; a help desk account might hold only the session permissions.
"""

from __future__ import annotations

from rest_framework.permissions import BasePermission


def is_admin(user) -> bool:
    """The role: an active staff account, which may use the administration surfaces at all."""
    return bool(user and user.is_authenticated and user.is_active and user.is_staff)


def admin_may(user, *permissions: str) -> bool:
    """An administrator holding every one of `permissions` ("workspaces.change_workspace")."""
    return is_admin(user) and user.has_perms(permissions)


def admin_may_view(user, model: str) -> bool:
    """An administrator who may see every row of `model` ("sessions_app.workspacesession"): the
    Django admin's rule, the view or the change permission."""
    app_label, name = model.split(".")
    return admin_may(user, f"{app_label}.view_{name}") or admin_may(
        user, f"{app_label}.change_{name}"
    )


class IsAdmin(BasePermission):
    """403 "Admin access required" unless the caller is an administrator holding the permissions
    the view's `admin_permissions` names for the request's method. HEAD and OPTIONS ask for GET's
    (the role alone where there is no GET). A method the view does not handle asks for the role
    (DRF then answers 405); one it handles but does not name is refused, never a silent pass
    (tests/config/test_admin_permissions.py checks every admin view names all it handles)."""

    message = "Admin access required"
    code = "admin_required"

    def has_permission(self, request, view):
        needs = view.admin_permissions
        if request.method in ("HEAD", "OPTIONS"):
            return admin_may(request.user, *needs.get("GET", ()))
        if not hasattr(view, request.method.lower()):
            return is_admin(request.user)
        return request.method in needs and admin_may(request.user, *needs[request.method])


class IsSuperuser(BasePermission):
    """The super gate in front of /api/agents/* (except the caller's own workspace routes)."""

    message = "Superuser access required"
    code = "superuser_required"

    def has_permission(self, request, view):
        user = request.user
        return bool(user and user.is_authenticated and user.is_active and user.is_superuser)
