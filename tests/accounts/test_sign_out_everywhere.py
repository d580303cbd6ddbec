"""Sign out everywhere: every token and browser session of an account ends at once, by the
person (API or the sign-out page) or by an administrator; the password stays, nothing else does."""

from __future__ import annotations

import jwt
import pytest
from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.test import Client

from accounts.models import User
from audit.models import AuditEntry
from tests.support.signin import PASSWORD, sign_in

pytestmark = pytest.mark.django_db

SIGN_OUT = "/api/auth/signout-everywhere"


def me(client, token: str):
    return client.get("/api/auth/me", HTTP_X_ACCESS_TOKEN=token)


def refresh(client, tokens: dict):
    return client.post("/api/auth/refresh", {"refresh": tokens["refresh"]}, format="json")


def test_signing_out_everywhere_ends_every_token_and_browser_session(anon, user, browser_for):
    laptop = sign_in(anon, user.email).json()
    phone = sign_in(anon, user.email).json()
    browser = browser_for(user)
    assert browser.get("/sessions").status_code == 200

    response = anon.post(SIGN_OUT, HTTP_X_ACCESS_TOKEN=phone["token"])

    assert response.status_code == 200
    assert response.json() == {"success": True, "message": "Signed out everywhere"}
    for tokens in (laptop, phone):
        for refused in (me(anon, tokens["token"]), refresh(anon, tokens)):
            assert (refused.status_code, refused.json()["code"]) == (401, "signed_out")
    assert browser.get("/sessions")["Location"].startswith("/login")
    entry = AuditEntry.objects.get(action="signed_out_everywhere")
    assert (entry.actor, entry.resource, entry.success) == (user, f"user:{user.pk}", True)
    # The password is unchanged: signing in again works, and its tokens do.
    again = sign_in(anon, user.email, PASSWORD).json()
    assert me(anon, again["token"]).status_code == 200
    assert refresh(anon, again).status_code == 200
    assert jwt.decode(again["token"], settings.SECRET_KEY, algorithms=["HS256"])["epoch"] == 1


def test_it_ends_only_that_accounts_tokens(anon, user, other_user):
    mine = sign_in(anon, user.email).json()
    theirs = sign_in(anon, other_user.email).json()

    anon.post(SIGN_OUT, HTTP_X_ACCESS_TOKEN=mine["token"])

    assert me(anon, mine["token"]).status_code == 401
    assert me(anon, theirs["token"]).status_code == 200


def test_tokens_and_sessions_from_before_the_feature_stay_valid(anon, user, browser_for):
    """Tokens issued before the epoch claim existed carry none, and count as epoch 0; browser
    sessions of an account never signed out everywhere keep Django's own hash. Upgrading signs
    nobody out."""
    tokens = sign_in(anon, user.email).json()
    claims = jwt.decode(tokens["token"], settings.SECRET_KEY, algorithms=["HS256"])
    del claims["epoch"]
    legacy = jwt.encode(claims, settings.SECRET_KEY, algorithm="HS256")
    browser = browser_for(user)
    session_hash = browser.session["_auth_user_hash"]

    assert me(anon, legacy).status_code == 200
    assert session_hash == AbstractBaseUser._get_session_auth_hash(user)  # Django's own
    assert browser.get("/sessions").status_code == 200


def test_saving_a_copy_loaded_before_the_sign_out_does_not_undo_it(anon, user):
    """An administrator's form (or any code) holding the account from before saves it after:
    the epoch is not written back, so the old tokens stay refused."""
    tokens = sign_in(anon, user.email).json()
    stale = User.objects.get(pk=user.pk)
    anon.post(SIGN_OUT, HTTP_X_ACCESS_TOKEN=tokens["token"])

    stale.first_name = "Alicia"
    stale.save()

    fresh = User.objects.get(pk=user.pk)
    assert (fresh.first_name, fresh.sign_in_epoch) == ("Alicia", 1)
    assert me(anon, tokens["token"]).json()["code"] == "signed_out"


def test_signing_out_needs_a_valid_token(anon):
    response = anon.post(SIGN_OUT)

    assert response.status_code == 401
    assert not AuditEntry.objects.exists()


def test_the_sign_out_page_signs_out_here_or_everywhere(user, browser_for, anon):
    tokens = sign_in(anon, user.email).json()
    other_browser = browser_for(user)
    page = browser_for(user)
    assert "Sign out everywhere" in page.get("/logout").content.decode()

    here = browser_for(user).post("/logout", follow=True)
    assert "You are signed out." in here.content.decode()
    assert other_browser.get("/sessions").status_code == 200  # only that browser
    assert me(anon, tokens["token"]).status_code == 200

    everywhere = page.post("/logout", {"everywhere": "1"}, follow=True)

    assert "You are signed out on every browser and app." in everywhere.content.decode()
    assert page.get("/sessions")["Location"].startswith("/login")
    assert other_browser.get("/sessions")["Location"].startswith("/login")
    assert me(anon, tokens["token"]).json()["code"] == "signed_out"
    assert list(AuditEntry.objects.order_by("id").values_list("action", flat=True)) == [
        "login",
        "logout",
        "signed_out_everywhere",
    ]


class TestTheAdminAction:
    def act(self, client: Client, *users):
        return client.post(
            "/admin/accounts/user/",
            {"action": "sign_out_everywhere", "_selected_action": [str(u.pk) for u in users]},
            follow=True,
        )

    def test_an_administrator_signs_a_person_out_everywhere(self, anon, user, superuser, site):
        tokens = sign_in(anon, user.email).json()

        response = self.act(site, user)

        assert "1 account(s) signed out everywhere." in response.content.decode()
        assert me(anon, tokens["token"]).json()["code"] == "signed_out"
        entry = AuditEntry.objects.get(action="signed_out_everywhere")
        assert (entry.actor, entry.resource) == (superuser, f"user:{user.pk}")
        assert site.get("/admin/").status_code == 200  # the administrator's own session stays

    def test_only_a_superuser_signs_out_an_administrator(self, anon, user, admin_user, staff_with):
        manager = staff_with("accounts.view_user", "accounts.change_user")
        admins_tokens = sign_in(anon, admin_user.email).json()
        users_tokens = sign_in(anon, user.email).json()
        client = Client()
        client.force_login(manager)

        response = self.act(client, user, admin_user)

        body = response.content.decode()
        assert "1 account(s) signed out everywhere." in body
        assert "1 administrator account(s) left unchanged" in body
        assert me(anon, admins_tokens["token"]).status_code == 200
        assert me(anon, users_tokens["token"]).status_code == 401
        assert AuditEntry.objects.filter(action="signed_out_everywhere").count() == 1
