from __future__ import annotations

import pyotp
import pytest
from django.utils import timezone

from accounts.models import Profile
from audit.models import AuditEntry
from tests.support.signin import PASSWORD

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def fill_password(page, email: str) -> None:
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Continue").click()


def test_a_person_without_mfa_signs_in_and_sees_the_catalog(page, user, screenshot):
    page.goto("/")  # the catalog asks for a sign-in first
    assert page.url.endswith("/login?next=/")
    screenshot(page, "login")

    fill_password(page, user.email)

    page.get_by_role("heading", name="Workspaces").wait_for()
    assert page.url.endswith("/")
    assert page.locator(".card").count() == 5
    screenshot(page, "catalog")
    assert AuditEntry.objects.filter(action="login", actor=user, details={"mfa": False}).exists()


def test_a_person_with_mfa_signs_in_with_a_one_time_code(page, user, screenshot):
    secret = pyotp.random_base32()
    Profile.objects.update_or_create(
        user=user,
        defaults={"mfa_enabled": True, "totp_secret": secret, "mfa_enabled_at": timezone.now()},
    )

    fill_password(page, user.email)
    page.get_by_role("heading", name="Two-step verification").wait_for()
    page.get_by_label("One-time code").fill("000000")
    page.get_by_role("button", name="Verify").click()
    page.get_by_text("The one-time code is not valid.").wait_for()
    screenshot(page, "otp-refused")

    page.get_by_label("One-time code").fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="Verify").click()

    page.get_by_role("heading", name="Workspaces").wait_for()
    assert page.get_by_text("MFA verified").is_visible()
    screenshot(page, "catalog")
    assert AuditEntry.objects.filter(action="login", actor=user, details={"mfa": True}).exists()

    page.get_by_role("button", name="Sign out").click()
    page.get_by_text("You are signed out.").wait_for()
    page.goto("/sessions")
    assert "/login" in page.url


def test_a_person_turns_on_two_step_sign_in_from_the_page(page, user, screenshot):
    fill_password(page, user.email)
    page.get_by_role("heading", name="Workspaces").wait_for()

    page.get_by_role("link", name=user.email).click()
    page.get_by_role("heading", name="Two-step sign-in").wait_for()
    page.get_by_label("Your password").fill(PASSWORD)
    page.get_by_role("button", name="Set up").click()
    page.locator(".qr svg").wait_for()
    screenshot(page, "mfa-setup")
    uri = page.get_by_role("link", name="Open in an authenticator app").get_attribute("href")
    secret = pyotp.parse_uri(uri).secret
    assert page.locator("code.secret").inner_text().replace(" ", "") == secret

    page.get_by_label("One-time code").fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="Turn on").click()

    page.get_by_text("Two-step sign-in is on.").wait_for()
    screenshot(page, "mfa-on")
    assert Profile.objects.get(user=user).mfa_enabled is True
    assert AuditEntry.objects.filter(action="mfa_enabled", actor=user).exists()
