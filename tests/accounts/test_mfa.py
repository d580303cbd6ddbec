from __future__ import annotations

import time

import jwt
import pyotp
import pytest
from django.conf import settings
from django.db import connection

from accounts.models import Profile
from audit.models import AuditEntry
from tests.support.signin import PASSWORD, enrol, sign_in

pytestmark = pytest.mark.django_db


def code_for(secret: str, steps_ahead: int = 0) -> str:
    return pyotp.TOTP(secret).at(time.time() + 30 * steps_ahead)


def test_setup_returns_a_secret_and_an_otpauth_uri_and_stores_it_encrypted(api, user):
    response = api.post("/api/auth/mfa/setup", {"password": PASSWORD}, format="json")

    body = response.json()
    assert response.status_code == 200
    assert body["otpauth_uri"].startswith("otpauth://totp/Workgate:alice%40example.com?secret=")
    assert f"secret={body['secret']}" in body["otpauth_uri"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT totp_secret FROM accounts_profile WHERE user_id = %s", [user.pk])
        stored = cursor.fetchone()[0]
    assert stored and body["secret"] not in stored
    assert Profile.objects.get(user=user).totp_secret == body["secret"]
    assert Profile.objects.get(user=user).mfa_enabled is False


def test_setup_asks_for_the_password_again(api, user):
    """A stolen access token alone must not bind its holder's authenticator to the account."""
    wrong = api.post("/api/auth/mfa/setup", {"password": "not it"}, format="json")
    missing = api.post("/api/auth/mfa/setup")

    assert wrong.status_code == 403 and wrong.json()["code"] == "invalid_password"
    assert missing.status_code == 400 and "password" in missing.json()["errors"]
    assert not Profile.objects.filter(user=user).exclude(totp_secret="").exists()
    failed = AuditEntry.objects.get(action="login_failed")
    assert (failed.actor_id, failed.details["reason"]) == (user.pk, "invalid_credentials")


def test_setup_password_guesses_count_with_the_addresss_sign_ins(api, user, settings):
    settings.WORKGATE_SIGNIN_RATE = "2/m"
    answers = [
        api.post("/api/auth/mfa/setup", {"password": "guess"}, format="json").status_code
        for _ in range(3)
    ]

    assert answers == [403, 403, 429]


def test_verifying_a_current_code_enables_mfa_and_is_audited(api, user):
    enrol(api)

    assert Profile.objects.get(user=user).mfa_enabled is True
    entry = AuditEntry.objects.get(action="mfa_enabled")
    assert entry.actor_id == user.pk
    assert api.get("/api/auth/me").json()["profile"]["mfa_enabled"] is True


def test_a_wrong_code_does_not_enable_mfa(api, user):
    api.post("/api/auth/mfa/setup", {"password": PASSWORD}, format="json")

    response = api.post("/api/auth/mfa/verify", {"otp": "000000"}, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_otp"
    assert Profile.objects.get(user=user).mfa_enabled is False
    refused = AuditEntry.objects.get(action="mfa_enabled")  # on the record, as refused
    assert (refused.actor_id, refused.success) == (user.pk, False)
    assert refused.details == {"reason": "invalid_otp"}


def test_setup_is_refused_once_mfa_is_enabled(api, user):
    enrol(api)

    response = api.post("/api/auth/mfa/setup", {"password": PASSWORD}, format="json")

    assert response.status_code == 409
    assert response.json()["code"] == "mfa_already_enabled"


def test_an_mfa_user_signing_in_without_a_code_gets_mfa_required(api, anon, user):
    enrol(api)

    response = sign_in(anon, user.email)

    assert response.status_code == 401
    assert response.json()["code"] == "mfa_required"
    assert "token" not in response.json()


def test_an_mfa_user_signs_in_with_the_next_code_and_the_token_says_mfa(api, anon, user):
    secret = enrol(api)

    response = sign_in(anon, user.email, otp=code_for(secret, steps_ahead=1))

    assert response.status_code == 200, response.json()
    claims = jwt.decode(response.json()["token"], settings.SECRET_KEY, algorithms=["HS256"])
    assert claims["mfa"] is True
    assert response.json()["profile"]["mfa_enabled"] is True


def test_a_wrong_code_is_401(api, anon, user):
    secret = enrol(api)
    valid = {code_for(secret, step) for step in (-1, 0, 1)}
    wrong = next(f"{n:06d}" for n in range(1000) if f"{n:06d}" not in valid)

    response = sign_in(anon, user.email, otp=wrong)

    assert response.status_code == 401
    assert response.json()["code"] == "invalid_otp"
    assert AuditEntry.objects.filter(action="login_failed", details__reason="invalid_otp").exists()


def test_a_code_cannot_be_used_twice(api, anon, user):
    secret = enrol(api)
    otp = code_for(secret, steps_ahead=1)

    first = sign_in(anon, user.email, otp=otp)
    second = sign_in(anon, user.email, otp=otp)

    assert first.status_code == 200
    assert second.status_code == 401
    assert second.json()["code"] == "otp_reused"


def test_the_enrolment_code_cannot_be_reused_to_sign_in(api, anon, user):
    api.post("/api/auth/mfa/setup", {"password": PASSWORD}, format="json")
    secret = Profile.objects.get(user=user).totp_secret
    otp = code_for(secret)
    api.post("/api/auth/mfa/verify", {"otp": otp}, format="json")

    response = sign_in(anon, user.email, otp=otp)

    assert response.status_code == 401
    assert response.json()["code"] == "otp_reused"
