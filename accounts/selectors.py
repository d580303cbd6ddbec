from __future__ import annotations

from accounts.models import Profile
from core.permissions import admin_permissions_of


def profile_of(user) -> Profile:
    profile, _ = Profile.objects.get_or_create(user=user)
    return profile


def profile_data(user) -> dict:
    return {
        "id": user.pk,
        "email": user.email,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "is_admin": user.is_staff,
        "admin_permissions": admin_permissions_of(user),
        "mfa_enabled": profile_of(user).mfa_enabled,
    }
