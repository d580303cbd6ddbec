from __future__ import annotations

import time

import pyotp
import pytest
from django.test import Client, override_settings

from accounts.models import Profile
from accounts.views import MFA_VERIFIED_KEY, PENDING_KEY, PENDING_TTL
from audit.models import AuditEntry
from tests.support.signin import PASSWORD

pytestmark = pytest.mark.django_db


def post_password(client: Client, email="alice@example.com", password=PASSWORD, **extra):
    return client.post("/login", {"email": email, "password": password, **extra})


def signed_in_user_id(client: Client):
    return client.session.get("_auth_user_id")


def test_a_person_without_mfa_signs_in_with_email_and_password(user):
    client = Client()
    page = client.get("/login")
    assert page.status_code == 200
    assert b'name="csrfmiddlewaretoken"' in page.content

    response = post_password(client)

    assert response.status_code == 302
    assert response["Location"] == "/"
    assert signed_in_user_id(client) == str(user.pk)
    assert client.session[MFA_VERIFIED_KEY] is False
    login = AuditEntry.objects.get(action="login")
    assert (login.actor_id, login.details, login.success) == (user.pk, {"mfa": False}, True)


def test_the_sign_in_form_is_csrf_protected(user):
    client = Client(enforce_csrf_checks=True)
    response = post_password(client)
    assert response.status_code == 403
    assert signed_in_user_id(client) is None


def test_a_wrong_password_is_refused_on_the_page_and_audited(user):
    client = Client()
    response = post_password(client, password="wrong")
    assert response.status_code == 200
    assert b"Invalid email or password." in response.content
    assert signed_in_user_id(client) is None
    failed = AuditEntry.objects.get(action="login_failed")
    assert failed.details["reason"] == "invalid_credentials"


def test_an_mfa_account_signs_in_only_after_its_one_time_code(user, enable_mfa):
    secret = enable_mfa(user)
    client = Client()

    step = post_password(client)
    assert step.status_code == 200
    assert b"Two-step verification" in step.content
    assert signed_in_user_id(client) is None
    assert client.get("/").status_code == 302  # not signed in yet

    done = client.post("/login", {"otp": pyotp.TOTP(secret).now()})

    assert done.status_code == 302
    assert signed_in_user_id(client) == str(user.pk)
    assert client.session[MFA_VERIFIED_KEY] is True
    assert PENDING_KEY not in client.session
    assert list(AuditEntry.objects.values_list("action", "details")) == [("login", {"mfa": True})]


def test_a_wrong_one_time_code_keeps_the_person_on_the_code_step(user, enable_mfa):
    enable_mfa(user)
    client = Client()
    post_password(client)

    response = client.post("/login", {"otp": "000000"})

    assert response.status_code == 200
    assert b"The one-time code is not valid." in response.content
    assert signed_in_user_id(client) is None
    assert AuditEntry.objects.get(action="login_failed").details["reason"] == "invalid_otp"


def test_a_one_time_code_cannot_sign_in_twice(user, enable_mfa):
    secret = enable_mfa(user)
    code = pyotp.TOTP(secret).now()
    first = Client()
    post_password(first)
    first.post("/login", {"otp": code})

    second = Client()
    post_password(second)
    response = second.post("/login", {"otp": code})

    assert b"already used" in response.content
    assert signed_in_user_id(second) is None


def test_the_code_step_expires_and_starts_over(user, enable_mfa, monkeypatch):
    secret = enable_mfa(user)
    client = Client()
    post_password(client)
    later = time.time() + PENDING_TTL + 1
    monkeypatch.setattr("accounts.views.time.time", lambda: later)

    response = client.post("/login", {"otp": pyotp.TOTP(secret).now()})

    assert b"Sign in to Workgate" in response.content
    assert signed_in_user_id(client) is None


def test_a_code_step_outlived_by_an_mfa_reset_starts_over(user, enable_mfa):
    """The password passed, then an administrator reset the account's second factor: the
    pending code step is dropped (it used to crash on the missing secret), nobody is signed in
    on a code, and the person signs in again with the password alone."""
    enable_mfa(user)
    client = Client()
    post_password(client)
    Profile.objects.filter(user=user).update(mfa_enabled=False, totp_secret="")

    response = client.post("/login", {"otp": "123456"})

    assert response.status_code == 200
    assert b"Sign in to Workgate" in response.content
    assert signed_in_user_id(client) is None
    assert PENDING_KEY not in client.session
    assert post_password(client).status_code == 302
    assert client.session[MFA_VERIFIED_KEY] is False


def test_sign_in_returns_to_the_page_asked_for_but_never_to_another_site(user):
    client = Client()
    assert post_password(client, next="/sessions")["Location"] == "/sessions"
    other = Client()
    assert post_password(other, next="https://evil.example/")["Location"] == "/"


def test_pages_send_anonymous_people_to_sign_in():
    client = Client()
    for path in ("/", "/sessions", "/assistant", "/audit"):
        response = client.get(path)
        assert response.status_code == 302
        assert response["Location"] == f"/login?next={path}"


@override_settings(WORKGATE_SIGNIN_RATE="2/m")
def test_the_sign_in_page_is_rate_limited_per_address(user):
    client = Client()
    post_password(client, password="wrong")
    post_password(client, password="wrong")
    response = post_password(client)
    assert b"Too many attempts" in response.content
    assert signed_in_user_id(client) is None


def test_signing_out_takes_a_post_and_ends_the_session(browser_for, user):
    client = browser_for(user)
    assert client.get("/logout").status_code == 200
    assert signed_in_user_id(client) == str(user.pk)

    response = client.post("/logout")

    assert response["Location"] == "/login"
    assert signed_in_user_id(client) is None
    entry = AuditEntry.objects.filter(action="logout").get()
    assert (entry.actor_id, entry.success) == (user.pk, True)


def test_signing_out_when_not_signed_in_records_nothing(db):
    response = Client().post("/logout")

    assert response["Location"] == "/login"
    assert not AuditEntry.objects.filter(action="logout").exists()


def test_the_django_admin_signs_in_through_the_same_page(admin_user, browser_for, user):
    anonymous = Client().get("/admin/login/?next=/admin/")
    assert anonymous["Location"] == "/login?next=%2Fadmin%2F"
    assert browser_for(admin_user).get("/admin/login/")["Location"] == "/admin/"
    assert browser_for(user).get("/admin/login/").status_code == 403


def test_the_admin_is_titled_workgate_and_links_to_the_pages(browser_for, admin_user):
    page = browser_for(admin_user).get("/admin/")
    assert page.status_code == 200
    assert b"Workgate administration" in page.content
    for link in (b'href="/"', b'href="/sessions"', b'href="/audit"', b'href="/assistant"'):
        assert link in page.content
