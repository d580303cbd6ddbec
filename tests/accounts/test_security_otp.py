"""Guessing one-time codes: with the password known, an attacker spreading guesses over many
addresses (each under the per-IP sign-in limit) still gets only a few per account."""

from __future__ import annotations

import pyotp
import pytest

from accounts.models import Profile
from accounts.services import OTP_CODES_ALLOWED
from audit.models import AuditEntry
from tests.support.signin import PASSWORD, sign_ins_at_once

pytestmark = pytest.mark.django_db


@pytest.fixture
def secret(user) -> str:
    value = pyotp.random_base32()
    Profile.objects.update_or_create(
        user=user, defaults={"totp_secret": value, "mfa_enabled": True}
    )
    return value


def sign_in(anon, otp: str, ip: str):
    body = {"email": "alice@example.com", "password": PASSWORD, "otp": otp}
    return anon.post("/api/auth/signin", body, format="json", REMOTE_ADDR=ip)


def wrong(secret: str) -> str:
    right = pyotp.TOTP(secret).now()
    return "000000" if right != "000000" else "111111"


def test_wrong_codes_from_many_addresses_lock_the_second_factor_of_that_account(anon, user, secret):
    for n in range(OTP_CODES_ALLOWED):
        response = sign_in(anon, wrong(secret), f"203.0.113.{n + 1}")
        assert response.status_code == 401 and response.json()["code"] == "invalid_otp"

    response = sign_in(anon, pyotp.TOTP(secret).now(), "198.51.100.7")

    assert response.status_code == 429
    assert response.json()["code"] == "rate_limited"
    assert int(response["Retry-After"]) > 0
    assert "token" not in response.json()
    last = AuditEntry.objects.order_by("-id").first()
    assert (last.action, last.success, last.details) == (
        "login_failed",
        False,
        {"reason": "otp_rate_limited"},
    )
    # The code that was refused was not spent: nothing claimed its time step.
    assert Profile.objects.get(user=user).totp_last_step == 0


def test_a_few_wrong_codes_do_not_stop_the_right_one(anon, user, secret):
    for n in range(OTP_CODES_ALLOWED - 1):
        assert sign_in(anon, wrong(secret), f"203.0.113.{n + 1}").status_code == 401

    response = sign_in(anon, pyotp.TOTP(secret).now(), "198.51.100.7")

    assert response.status_code == 200 and response.json()["token"]


def test_the_lock_is_per_account(anon, user, other_user, secret):
    for n in range(OTP_CODES_ALLOWED):
        sign_in(anon, wrong(secret), f"203.0.113.{n + 1}")
    other_secret = pyotp.random_base32()
    Profile.objects.update_or_create(
        user=other_user, defaults={"totp_secret": other_secret, "mfa_enabled": True}
    )

    body = {"email": "bob@example.com", "password": PASSWORD, "otp": pyotp.TOTP(other_secret).now()}
    response = anon.post("/api/auth/signin", body, format="json", REMOTE_ADDR="198.51.100.8")

    assert response.status_code == 200


def test_the_sign_in_page_says_to_wait_instead_of_failing(client, user, secret):
    for n in range(OTP_CODES_ALLOWED):
        client.post(
            "/login", {"email": "alice@example.com", "password": PASSWORD}, REMOTE_ADDR="10.9.0.1"
        )
        client.post("/login", {"otp": wrong(secret)}, REMOTE_ADDR=f"10.9.1.{n + 1}")
        client.get("/login?restart=1")

    client.post("/login", {"email": "alice@example.com", "password": PASSWORD})
    response = client.post("/login", {"otp": pyotp.TOTP(secret).now()})

    assert response.status_code == 200
    assert "too many codes tried" in response.content.decode().lower()
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db(transaction=True)
def test_codes_sent_at_once_are_counted_before_any_is_checked(user, secret, settings):
    """Thirty wrong codes in flight together (from thirty addresses, as a botnet would send
    them): exactly OTP_CODES_ALLOWED are checked, the rest are refused unchecked."""
    # The account's password limit (10 in flight before any is handed back) would answer some
    # of the thirty 429 whether or not their code was checked; this test is about the codes.
    settings.WORKGATE_SIGNIN_ACCOUNT_RATE = "1000/15m"
    attempts = 30
    body = {"email": "alice@example.com", "password": PASSWORD, "otp": wrong(secret)}

    outcomes = sign_ins_at_once(body, addresses=[f"203.0.113.{n + 1}" for n in range(attempts)])

    assert outcomes == {
        (401, "invalid_otp"): OTP_CODES_ALLOWED,
        (429, "rate_limited"): attempts - OTP_CODES_ALLOWED,
    }
    checked = AuditEntry.objects.filter(action="login_failed", details__reason="invalid_otp")
    assert checked.count() == OTP_CODES_ALLOWED


ARABIC_INDIC_DIGITS = "\u0661\u0662\u0663\u0664\u0665\u0666"  # "123456" in another script


def test_digits_of_another_script_are_a_wrong_code_counted_and_audited(anon, user, secret):
    """Python's isdigit() takes them, and comparing one to a code raised: a 500 that still used
    up one of the account's five codes and left no login_failed entry."""
    response = sign_in(anon, ARABIC_INDIC_DIGITS, "203.0.113.50")

    assert response.status_code == 401 and response.json()["code"] == "invalid_otp"
    failed = AuditEntry.objects.get(action="login_failed")
    assert (failed.actor_id, failed.details) == (user.pk, {"reason": "invalid_otp"})
    assert Profile.objects.get(user=user).totp_last_step == 0


def test_the_sign_in_page_refuses_them_as_not_a_code(client, user, secret):
    client.post("/login", {"email": user.email, "password": PASSWORD})

    page = client.post("/login", {"otp": ARABIC_INDIC_DIGITS})

    assert page.status_code == 200
    assert b"Enter the 6 digits shown by your authenticator app." in page.content
    assert "_auth_user_id" not in client.session
