"""Role checks shared by every API view."""

from __future__ import annotations

from rest_framework.permissions import BasePermission


def is_admin(user) -> bool:
    return bool(user and user.is_authenticated and user.is_active and user.is_staff)


class IsAdmin(BasePermission):
    message = "Admin access required"
    code = "admin_required"

    def has_permission(self, request, view):
        return is_admin(request.user)


class IsSuperuser(BasePermission):
    """The super gate in front of /api/agents/* (except the caller's own workspace routes)."""

    message = "Superuser access required"
    code = "superuser_required"

    def has_permission(self, request, view):
        user = request.user
        return bool(user and user.is_authenticated and user.is_active and user.is_superuser)
