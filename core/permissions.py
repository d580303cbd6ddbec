"""Role checks shared by every API view and page.

An administrator is an active staff account. What an administrator may do is decided by the
Django permissions it holds, its own or its groups' (a superuser holds them all): the grants the
Django admin checks, so /admin/ and the admin API always agree on who may change what. The
"Workgate administrators" group (accounts migration 0002) holds every permission the admin API
asks for; a help desk account might hold only the session permissions.
"""

from __future__ import annotations

from rest_framework.permissions import BasePermission

# Every permission the admin API and the pages ask administrators for; the "Workgate
# administrators" group holds them all (its migration keeps its own copy of this list, and a
# test checks the two and the views agree).
ADMIN_PERMISSIONS = (
    "workspaces.add_workspace",
    "workspaces.change_workspace",
    "workspaces.delete_workspace",
    "workspaces.view_workspace",
    "sessions_app.change_workspacesession",
    "sessions_app.view_workspacesession",
    "audit.view_auditentry",
    "streaming.view_history",
)


def is_admin(user) -> bool:
    """The role: an active staff account, which may use the administration surfaces at all."""
    return bool(user and user.is_authenticated and user.is_active and user.is_staff)


def _holds(user, permission: str) -> bool:
    """The Django admin's rule: a view permission is also granted by the change permission."""
    app_label, _, codename = permission.partition(".")
    if codename.startswith("view_") and user.has_perm(f"{app_label}.change_{codename[5:]}"):
        return True
    return user.has_perm(permission)


def admin_may(user, *permissions: str) -> bool:
    """An administrator holding every one of `permissions` ("workspaces.change_workspace"); a
    `view_` permission is held by whoever holds the model's `change_` one, as in the admin."""
    return is_admin(user) and all(_holds(user, permission) for permission in permissions)


def admin_permissions_of(user) -> list[str]:
    """Which of ADMIN_PERMISSIONS `user` holds as an administrator (none unless staff)."""
    return [permission for permission in ADMIN_PERMISSIONS if admin_may(user, permission)]


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
