"""Guessing a password from many addresses: failed password checks are counted per email
(WORKGATE_SIGNIN_ACCOUNT_RATE, 10 per 15 minutes), and past that every attempt is refused
alike, right password or wrong, known email or not; only an MFA account's right password with
a valid, unused code still signs in, so guessing cannot lock its owner out."""

from __future__ import annotations

import itertools
import re
import time
from collections import Counter

import jwt
import pyotp
import pytest
from django.conf import settings
from django.contrib.auth.signals import user_login_failed
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import Profile
from accounts.services import OTP_CODES_ALLOWED
from accounts.views import MFA_VERIFIED_KEY
from audit.models import AuditEntry
from tests.support.signin import PASSWORD, sign_ins_at_once

pytestmark = pytest.mark.django_db

FAILURES_ALLOWED = 10  # the default WORKGATE_SIGNIN_ACCOUNT_RATE, 10/15m
WINDOW = 15 * 60


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(autouse=True)
def clock(monkeypatch) -> Clock:
    """time.time() held still, so that the refusals a test compares name the same Retry-After,
    and moved on only when a test says so (the rate-limit windows and the TOTP steps follow)."""
    held = Clock()
    monkeypatch.setattr(time, "time", lambda: held.now)
    return held


_sources = itertools.count()


def another_address() -> str:
    """An address no recent request came from, so the per-address limit never applies."""
    return f"198.51.100.{next(_sources) % 250 + 1}"


def sign_in(email="alice@example.com", password=PASSWORD, otp=None, client=None):
    body = {"email": email, "password": password, **({"otp": otp} if otp else {})}
    return (client or APIClient()).post(
        "/api/auth/signin", body, format="json", REMOTE_ADDR=another_address()
    )


def fail(email="alice@example.com", times=FAILURES_ALLOWED):
    for _ in range(times):
        response = sign_in(email, "a wrong guess")
        assert (response.status_code, response.json()["code"]) == (401, "invalid_credentials")


def refusal(response) -> tuple[int, dict, str]:
    return response.status_code, response.json(), response["Retry-After"]


def without_seconds(response) -> dict:
    return {**response.json(), "detail": re.sub(r"\d+", "N", response.json()["detail"])}


def code(secret: str, clock: Clock, *, steps_ahead: int = 0) -> str:
    """The current code, or the next one (accepted too, for clock drift)."""
    return pyotp.TOTP(secret).at(clock.now + 30 * steps_ahead)


def wrong_code(secret: str, clock: Clock) -> str:
    return "000000" if code(secret, clock) != "000000" else "111111"


def test_the_default_is_ten_failed_passwords_in_fifteen_minutes():
    assert settings.WORKGATE_SIGNIN_ACCOUNT_RATE == "10/15m"


def test_failures_from_many_addresses_lock_the_account_even_against_the_right_password(user):
    fail()

    right = sign_in(password=PASSWORD)
    wrong = sign_in(password="another guess")

    assert right.status_code == 429
    body = right.json()
    assert (body["success"], body["code"]) == (False, "rate_limited")
    assert body["detail"].startswith("Too many requests")
    assert 0 < int(right["Retry-After"]) <= WINDOW
    assert "token" not in right.json()
    assert refusal(right) == refusal(wrong)
    refused = AuditEntry.objects.filter(details__reason="account_rate_limited").order_by("id")
    assert [(e.action, e.actor_id, e.success, e.details) for e in refused] == 2 * [
        (
            "login_failed",
            user.pk,
            False,
            {"email": "alice@example.com", "reason": "account_rate_limited"},
        )
    ]
    assert AuditEntry.objects.filter(action="login_failed").count() == FAILURES_ALLOWED + 2
    assert not AuditEntry.objects.filter(action="login").exists()


def test_an_email_is_counted_however_it_is_spelled(user):
    for n in range(FAILURES_ALLOWED):
        fail(["alice@example.com", " ALICE@Example.com ", "Alice@EXAMPLE.COM"][n % 3], times=1)

    assert sign_in(" Alice@example.com").status_code == 429


def test_another_email_is_unaffected(user, other_user):
    fail("alice@example.com")

    response = sign_in("bob@example.com")

    assert response.status_code == 200 and response.json()["token"]


def test_only_failed_passwords_count(user):
    fail(times=FAILURES_ALLOWED - 1)
    for _ in range(3):
        assert sign_in().status_code == 200

    last_allowed = sign_in(password="a wrong guess")
    refused = sign_in()

    assert last_allowed.status_code == 401
    assert refused.status_code == 429


def test_an_unknown_email_is_refused_after_the_same_failures_and_in_the_same_words(user):
    fail("alice@example.com")
    fail("nobody@example.com")

    known = sign_in("alice@example.com", "a wrong guess")
    unknown = sign_in("nobody@example.com", "a wrong guess")

    assert unknown.status_code == 429
    # Each email's window ends at its own second (django-ratelimit spreads them), whether or
    # not an account has it; the rest is the same.
    assert without_seconds(unknown) == without_seconds(known)
    entry = AuditEntry.objects.filter(details__email="nobody@example.com").latest("id")
    assert (entry.action, entry.actor_id, entry.details) == (
        "login_failed",
        None,
        {"email": "nobody@example.com", "reason": "account_rate_limited"},
    )


def test_past_the_limit_a_password_without_a_code_is_not_checked(user):
    fail()
    checked = []

    def receiver(**kwargs):
        checked.append(kwargs["credentials"]["username"])

    user_login_failed.connect(receiver)
    try:
        responses = [sign_in(password=guess) for guess in ("guess one", "guess two", PASSWORD)]
    finally:
        user_login_failed.disconnect(receiver)

    assert [r.status_code for r in responses] == [429, 429, 429]
    assert checked == []


def test_when_the_window_has_passed_the_account_signs_in_again(user, clock):
    fail()
    wait = int(sign_in()["Retry-After"])

    clock.advance(wait - 1)
    still = sign_in()
    clock.advance(1)
    again = sign_in()

    assert still.status_code == 429
    assert again.status_code == 200 and again.json()["token"]
    assert AuditEntry.objects.filter(action="login", actor=user).count() == 1


@pytest.mark.django_db(transaction=True)
def test_wrong_passwords_sent_at_once_are_counted_before_any_is_checked(user):
    """Thirty wrong passwords in flight together, from thirty addresses: exactly
    FAILURES_ALLOWED are checked, the rest are refused unchecked."""
    attempts = 30
    body = {"email": "alice@example.com", "password": "a wrong guess"}

    outcomes = sign_ins_at_once(body, addresses=[another_address() for _ in range(attempts)])

    assert outcomes == {
        (401, "invalid_credentials"): FAILURES_ALLOWED,
        (429, "rate_limited"): attempts - FAILURES_ALLOWED,
    }
    reasons = Counter(AuditEntry.objects.values_list("details__reason", flat=True))
    assert reasons == {
        "invalid_credentials": FAILURES_ALLOWED,
        "account_rate_limited": attempts - FAILURES_ALLOWED,
    }


def test_an_mfa_account_signs_in_past_the_limit_with_its_password_and_a_valid_code(
    user, enable_mfa, clock
):
    secret = enable_mfa(user)
    fail()

    response = sign_in(otp=code(secret, clock))

    assert response.status_code == 200
    claims = jwt.decode(response.json()["token"], settings.SECRET_KEY, algorithms=["HS256"])
    assert claims["mfa"] is True
    login = AuditEntry.objects.get(action="login")
    assert (login.actor_id, login.details) == (user.pk, {"mfa": True})
    step = int(clock.now // 30)
    assert Profile.objects.get(user=user).totp_last_step == step  # the code is spent


def test_past_the_limit_anything_short_of_the_password_and_a_valid_code_is_refused_alike(
    user, enable_mfa, clock
):
    secret = enable_mfa(user)
    fail()
    baseline = refusal(sign_in(password="a wrong guess"))
    spent = code(secret, clock)
    assert sign_in(otp=spent).status_code == 200  # the owner, past the limit

    unused = code(secret, clock, steps_ahead=1)

    attempts = {
        "wrong password, valid code": sign_in(password="a guess", otp=unused),
        "right password, wrong code": sign_in(otp=wrong_code(secret, clock)),
        "right password, no code": sign_in(),
        "right password, a spent code": sign_in(otp=spent),
    }

    assert {name: refusal(r) for name, r in attempts.items()} == {
        name: baseline for name in attempts
    }
    assert AuditEntry.objects.filter(action="login").count() == 1
    assert Profile.objects.get(user=user).totp_last_step == int(clock.now // 30)  # unused unspent


def test_a_valid_code_sent_with_a_wrong_password_is_not_spent(user, enable_mfa, clock):
    secret = enable_mfa(user)
    fail()

    refused = sign_in(password="a guess", otp=code(secret, clock))
    owner = sign_in(otp=code(secret, clock))

    assert refused.status_code == 429
    assert owner.status_code == 200


def test_guesses_past_the_limit_cannot_use_up_the_owners_codes(user, enable_mfa, clock):
    secret = enable_mfa(user)
    fail()
    for _ in range(OTP_CODES_ALLOWED + 3):
        assert sign_in(password="a guess", otp=wrong_code(secret, clock)).status_code == 429

    owner = sign_in(otp=code(secret, clock))

    assert owner.status_code == 200


def test_past_the_limit_the_right_password_still_gets_only_a_few_codes(user, enable_mfa, clock):
    """Someone who has the password gains no extra code guesses from the exception."""
    secret = enable_mfa(user)
    fail()
    for _ in range(OTP_CODES_ALLOWED):
        assert sign_in(otp=wrong_code(secret, clock)).status_code == 429

    response = sign_in(otp=code(secret, clock))

    assert response.status_code == 429
    assert Profile.objects.get(user=user).totp_last_step == 0


def test_an_account_without_mfa_is_refused_even_with_a_code(user):
    fail()

    response = sign_in(otp="123456")

    assert response.status_code == 429


def test_setting_up_mfa_asks_a_password_counted_with_the_same_failures(client_for, user):
    api = client_for(user)
    fail(times=FAILURES_ALLOWED - 1)

    wrong = api.post("/api/auth/mfa/setup", {"password": "a guess"}, format="json")
    right = api.post("/api/auth/mfa/setup", {"password": PASSWORD}, format="json")

    assert (wrong.status_code, wrong.json()["code"]) == (403, "invalid_password")
    assert (right.status_code, right.json()["code"]) == (429, "rate_limited")
    assert not Profile.objects.filter(user=user).exclude(totp_secret="").exists()


def test_the_mfa_page_asks_the_password_counted_with_the_same_failures(browser_for, user):
    client = browser_for(user)
    fail()

    page = client.post("/account/mfa", {"action": "start", "password": PASSWORD})

    assert page.status_code == 200
    assert b"Too many attempts; try again in" in page.content
    assert not Profile.objects.filter(user=user).exclude(totp_secret="").exists()


# The sign-in page: the same service, the same counts.


def post_password(client: Client, password=PASSWORD, **extra):
    body = {"email": "alice@example.com", "password": password, **extra}
    return client.post("/login", body, REMOTE_ADDR=another_address())


def test_the_sign_in_page_refuses_the_right_password_past_the_limit(user):
    for _ in range(FAILURES_ALLOWED):
        post_password(Client(), password="a wrong guess")
    client = Client()

    page = post_password(client)

    assert page.status_code == 200
    assert b"Too many failed sign-ins for this account" in page.content
    assert b'name="otp"' in page.content  # an MFA account may still sign in with a code
    assert "_auth_user_id" not in client.session
    entry = AuditEntry.objects.latest("id")
    assert (entry.action, entry.actor_id, entry.details) == (
        "login_failed",
        user.pk,
        {"email": "alice@example.com", "reason": "account_rate_limited"},
    )
    assert sign_in().status_code == 429  # the page's failures count for the API too


def test_the_sign_in_page_lets_an_mfa_account_in_past_the_limit_with_a_code(
    user, enable_mfa, clock
):
    secret = enable_mfa(user)
    fail()
    client = Client()
    assert b"Too many failed sign-ins" in post_password(client).content

    done = post_password(client, otp=code(secret, clock))

    assert done.status_code == 302
    assert client.session["_auth_user_id"] == str(user.pk)
    assert client.session[MFA_VERIFIED_KEY] is True
    login = AuditEntry.objects.get(action="login")
    assert (login.actor_id, login.details) == (user.pk, {"mfa": True})


def test_the_sign_in_page_refuses_a_wrong_password_with_a_valid_code_past_the_limit(
    user, enable_mfa, clock
):
    secret = enable_mfa(user)
    fail()
    client = Client()

    page = post_password(client, password="a guess", otp=code(secret, clock))

    assert b"Too many failed sign-ins for this account" in page.content
    assert "_auth_user_id" not in client.session
    assert Profile.objects.get(user=user).totp_last_step == 0
