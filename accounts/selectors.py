from __future__ import annotations

from django.conf import settings

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


def mfa_required_for(user, *, mfa_enabled: bool | None = None) -> bool:
    """Whether `user` must have verified a one-time code at sign-in to launch a workspace or
    connect to a desktop: when the deployment asks it of everyone, or the account turned
    two-step sign-in on (`mfa_enabled`, when the caller read it already: owner_mfa_enabled)."""
    if settings.WORKGATE_REQUIRE_MFA:
        return True
    if mfa_enabled is None:
        mfa_enabled = Profile.objects.filter(user_id=user.pk, mfa_enabled=True).exists()
    return mfa_enabled
