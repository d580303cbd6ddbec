"""/account/mfa: a signed-in person turns on two-step sign-in from the pages (the same services as
/api/auth/mfa/setup and /verify), and their next sign-in asks for the code."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest
from django.conf import settings
from django.test import Client

from accounts.models import Profile
from accounts.views import MFA_VERIFIED_KEY
from audit.models import AuditEntry
from sessions_app.models import WorkspaceSession
from tests.support.signin import PASSWORD
from tests.support.workspaces import make_web_workspace

pytestmark = pytest.mark.django_db

PAGE = "/account/mfa"


def shown_secret(page) -> str:
    uri = re.search(r'href="(otpauth://[^"]+)"', page.content.decode()).group(1)
    return parse_qs(urlsplit(uri.replace("&amp;", "&")).query)["secret"][0]


def proof_of(page) -> str:
    """The hidden field that only the answer to the password carries."""
    return re.search(r'name="enrolment" value="([^"]+)"', page.content.decode()).group(1)


def start(client) -> tuple[str, str]:
    """Set up from the page: the secret shown and the enrolment's proof."""
    page = client.post(PAGE, {"action": "start", "password": PASSWORD})
    return shown_secret(page), proof_of(page)


def verify(client, proof: str, otp: str, **kwargs):
    return client.post(PAGE, {"action": "verify", "otp": otp, "enrolment": proof}, **kwargs)


def test_looking_at_the_page_changes_nothing(browser_for, user):
    page = browser_for(user).get(PAGE)

    assert page.status_code == 200
    assert b"Off." in page.content and b"Set up" in page.content
    assert not Profile.objects.filter(user=user).exclude(totp_secret="").exists()


def test_setting_up_shows_a_qr_code_and_the_key_and_turns_on_with_a_first_code(browser_for, user):
    client = browser_for(user)
    session_key = client.session.session_key

    started = client.post(PAGE, {"action": "start", "password": PASSWORD})
    assert started.status_code == 200
    assert b"<svg" in started.content  # the QR code, drawn on the server
    secret = shown_secret(started)
    assert secret.encode()[:4] in started.content  # and the key, for typing by hand
    assert Profile.objects.get(user=user).mfa_enabled is False  # not before a code
    proof = proof_of(started)

    wrong = verify(client, proof, "000000")
    assert b"The one-time code is not valid." in wrong.content
    assert shown_secret(wrong) == secret  # the same key, to try again
    assert proof_of(wrong) == proof
    assert Profile.objects.get(user=user).mfa_enabled is False
    refused = AuditEntry.objects.get(action="mfa_enabled")
    assert (refused.success, refused.details) == (False, {"reason": "invalid_otp"})

    turned_on = verify(client, proof, pyotp.TOTP(secret).now(), follow=True)
    assert b"Two-step sign-in is on." in turned_on.content
    assert b"On since" in turned_on.content
    profile = Profile.objects.get(user=user)
    assert profile.mfa_enabled and profile.totp_secret == secret
    assert client.session[MFA_VERIFIED_KEY] is True  # password and code: both factors
    assert client.session.session_key != session_key  # and a new session key for it
    enabled = AuditEntry.objects.get(action="mfa_enabled", success=True)
    assert enabled.actor_id == user.pk
    # This session may now launch what needs a verified second factor.
    assert client.post(f"/workspaces/{make_web_workspace().id}/launch").status_code == 302
    assert WorkspaceSession.objects.get().mfa_verified is True


def test_the_next_sign_in_asks_for_the_code(browser_for, user):
    client = browser_for(user)
    secret, proof = start(client)
    verify(client, proof, pyotp.TOTP(secret).now())

    fresh = Client()
    step = fresh.post("/login", {"email": user.email, "password": PASSWORD})

    assert step.status_code == 200
    assert b"Two-step verification" in step.content
    assert "_auth_user_id" not in fresh.session


def test_an_account_with_mfa_on_cannot_rebind_it_from_the_page(browser_for, user, enable_mfa):
    secret = enable_mfa(user)

    response = browser_for(user, mfa=True).post(
        PAGE, {"action": "start", "password": PASSWORD}, follow=True
    )

    assert b"MFA is already enabled for this account." in response.content
    assert Profile.objects.get(user=user).totp_secret == secret


def test_the_page_is_for_signed_in_people_and_its_posts_are_csrf_checked(user):
    assert Client().get(PAGE)["Location"].startswith("/login")

    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.post(PAGE, {"action": "start", "password": PASSWORD}).status_code == 403
    assert not Profile.objects.filter(user=user).exclude(totp_secret="").exists()


def test_starting_asks_for_the_password_again(browser_for, user):
    """A stolen session cookie alone must not bind the thief's authenticator."""
    client = browser_for(user)

    refused = client.post(PAGE, {"action": "start", "password": "not the password"})

    assert b"The password is not correct." in refused.content
    assert b"otpauth://" not in refused.content
    assert not Profile.objects.filter(user=user).exclude(totp_secret="").exists()
    failed = AuditEntry.objects.get(action="login_failed")
    assert (failed.actor_id, failed.success) == (user.pk, False)


def test_a_session_cookie_alone_can_neither_read_nor_confirm_a_pending_secret(
    browser_for, user, client_for
):
    """The owner started enrolment elsewhere (with a token) and never finished; a thief with
    only the session cookie gets nothing from the page or the API."""
    secret = (
        client_for(user)
        .post("/api/auth/mfa/setup", {"password": PASSWORD}, format="json")
        .json()["secret"]
    )
    thief = browser_for(user)

    page = thief.post(PAGE, {"action": "verify", "otp": pyotp.TOTP(secret).now()})
    by_cookie = thief.post("/api/auth/mfa/setup", {"password": PASSWORD})

    assert b"otpauth://" not in page.content and secret.encode()[:8] not in page.content
    assert Profile.objects.get(user=user).mfa_enabled is False
    assert thief.session.get(MFA_VERIFIED_KEY) is False
    assert by_cookie.status_code == 401
    assert Profile.objects.get(user=user).totp_secret == secret  # not rebound either


def test_a_cookie_stolen_while_its_owner_sets_up_can_neither_read_nor_confirm_the_secret(
    browser_for, user
):
    """The owner typed the password and is scanning the code; a thief holding a copy of the
    session cookie in those minutes lacks only what the owner's page carries."""
    owner = browser_for(user)
    secret, proof = start(owner)
    thief = Client()
    name = settings.SESSION_COOKIE_NAME  # __Host-sessionid where the cookie is Secure
    thief.cookies[name] = owner.cookies[name].value

    shown = thief.post(PAGE, {"action": "verify", "otp": "x"})
    confirmed = thief.post(PAGE, {"action": "verify", "otp": pyotp.TOTP(secret).now()})
    guessed = verify(thief, "a-guess", pyotp.TOTP(secret).now())

    for page in (shown, confirmed, guessed):
        assert b"otpauth://" not in page.content and secret.encode()[:8] not in page.content
    assert Profile.objects.get(user=user).mfa_enabled is False
    assert thief.session.get(MFA_VERIFIED_KEY) is False
    # The owner, with the page's proof, finishes as before.
    verify(owner, proof, pyotp.TOTP(secret).now())
    assert Profile.objects.get(user=user).mfa_enabled is True


def test_wrong_first_codes_are_limited_like_sign_in_codes(browser_for, user):
    client = browser_for(user)
    secret, proof = start(client)
    for _ in range(5):
        verify(client, proof, "000000")

    limited = verify(client, proof, pyotp.TOTP(secret).now())

    assert b"Too many codes tried" in limited.content
    assert Profile.objects.get(user=user).mfa_enabled is False
    assert AuditEntry.objects.filter(action="mfa_enabled", success=False).count() == 5
