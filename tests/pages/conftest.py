from __future__ import annotations

import pyotp
import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import Profile
from accounts.views import MFA_VERIFIED_KEY


@pytest.fixture
def browser_for():
    """A Django test client signed in with a session cookie, as the pages are used."""

    def make(user, *, mfa: bool = False) -> Client:
        client = Client()
        client.force_login(user)
        session = client.session
        session[MFA_VERIFIED_KEY] = mfa
        session.save()
        return client

    return make


@pytest.fixture
def enable_mfa():
    def enable(user) -> str:
        secret = pyotp.random_base32()
        Profile.objects.update_or_create(
            user=user,
            defaults={
                "mfa_enabled": True,
                "totp_secret": secret,
                "totp_last_step": 0,
                "mfa_enabled_at": timezone.now(),
            },
        )
        return secret

    return enable
