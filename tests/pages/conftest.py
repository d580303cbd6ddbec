from __future__ import annotations

import pyotp
import pytest
from django.utils import timezone

from accounts.models import Profile


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
