from __future__ import annotations

import jwt
import pytest
from django.conf import settings

from audit.models import AuditEntry
from tests.support.signin import PASSWORD, sign_in

pytestmark = pytest.mark.django_db


def test_signing_in_returns_a_24_hour_access_token_and_the_profile(anon, user):
    response = sign_in(anon, "alice@example.com")

    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    assert body["expiresInSec"] == 86400
    assert body["profile"] == {
        "id": user.pk,
        "email": "alice@example.com",
        "first_name": "Alice",
        "last_name": "",
        "is_admin": False,
        "admin_permissions": [],
        "mfa_enabled": False,
    }
    header = jwt.get_unverified_header(body["token"])
    claims = jwt.decode(body["token"], settings.SECRET_KEY, algorithms=["HS256"])
    assert header["alg"] == "HS256"
    assert claims["exp"] - claims["iat"] == 86400
    assert claims["token_type"] == "access"
    assert claims["mfa"] is False
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.actor_id, entry.success) == ("login", user.pk, True)
    assert entry.ip_address == "127.0.0.1"
    assert body["token"] not in str(entry.details)


def test_the_email_is_matched_without_regard_to_case(anon, user):
    assert sign_in(anon, "ALICE@Example.com").status_code == 200


def test_the_token_lifetime_follows_the_setting(anon, user, settings):
    settings.WORKGATE_ACCESS_TOKEN_TTL = 600

    body = sign_in(anon, "alice@example.com").json()

    claims = jwt.decode(body["token"], settings.SECRET_KEY, algorithms=["HS256"])
    assert body["expiresInSec"] == 600
    assert claims["exp"] - claims["iat"] == 600


@pytest.mark.parametrize(
    ("email", "password"),
    [("alice@example.com", "wrong password"), ("nobody@example.com", PASSWORD)],
)
def test_a_wrong_password_or_unknown_email_is_401_and_audited(anon, user, email, password):
    response = sign_in(anon, email, password)

    assert response.status_code == 401
    assert response.json() == {
        "success": False,
        "detail": "Invalid email or password.",
        "code": "invalid_credentials",
    }
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.success) == ("login_failed", False)
    assert entry.details == {"email": email, "reason": "invalid_credentials"}
    assert password not in str(entry.details)


def test_an_inactive_user_cannot_sign_in(anon, user):
    user.is_active = False
    user.save()
    assert sign_in(anon, "alice@example.com").status_code == 401


def test_missing_fields_are_a_400_naming_the_field(anon, db):
    response = anon.post("/api/auth/signin", {"email": "a@example.com"}, format="json")

    assert response.status_code == 400
    body = response.json()
    assert body["success"] is False
    assert body["code"] == "invalid"
    assert body["detail"].startswith("password:")
    assert "password" in body["errors"]
    assert not AuditEntry.objects.exists()


def test_me_answers_the_profile_for_either_token_header(client_for, user, anon):
    token = client_for(user)._credentials["HTTP_X_ACCESS_TOKEN"]

    by_header = anon.get("/api/auth/me", HTTP_X_ACCESS_TOKEN=token)
    by_bearer = anon.get("/api/auth/me", HTTP_AUTHORIZATION=f"Bearer {token}")

    assert by_header.status_code == by_bearer.status_code == 200
    assert (
        by_header.json()["profile"]["email"] == by_bearer.json()["profile"]["email"] == user.email
    )


def test_refresh_gives_a_new_access_token_that_keeps_the_mfa_claim(anon, user):
    tokens = sign_in(anon, "alice@example.com").json()

    response = anon.post("/api/auth/refresh", {"refresh": tokens["refresh"]}, format="json")

    assert response.status_code == 200
    claims = jwt.decode(response.json()["token"], settings.SECRET_KEY, algorithms=["HS256"])
    assert claims["token_type"] == "access"
    assert claims["mfa"] is False
    assert claims["exp"] - claims["iat"] == settings.WORKGATE_ACCESS_TOKEN_TTL


def test_refresh_refuses_an_access_token_and_garbage(anon, user):
    tokens = sign_in(anon, "alice@example.com").json()

    for bad in (tokens["token"], "garbage"):
        response = anon.post("/api/auth/refresh", {"refresh": bad}, format="json")
        assert response.status_code == 401
        assert response.json()["code"] == "token_not_valid"


def test_refresh_refuses_a_deactivated_user(anon, user):
    tokens = sign_in(anon, "alice@example.com").json()
    user.is_active = False
    user.save()

    response = anon.post("/api/auth/refresh", {"refresh": tokens["refresh"]}, format="json")

    assert response.status_code == 401


def test_a_password_change_ends_every_token_issued_before_it(anon, user):
    before = sign_in(anon, "alice@example.com").json()
    user.set_password("a brand new passphrase")
    user.save()

    me = anon.get("/api/auth/me", HTTP_X_ACCESS_TOKEN=before["token"])
    refreshed = anon.post("/api/auth/refresh", {"refresh": before["refresh"]}, format="json")
    ticket = anon.post(
        "/api/agents/workspace/ticket",
        {"workspaceId": "anything"},
        format="json",
        HTTP_AUTHORIZATION=f"Bearer {before['token']}",
    )

    assert (me.status_code, me.json()["code"]) == (401, "password_changed")
    assert (refreshed.status_code, refreshed.json()["code"]) == (401, "password_changed")
    assert (ticket.status_code, ticket.json()["code"]) == (401, "password_changed")
    after = sign_in(anon, "alice@example.com", password="a brand new passphrase").json()
    assert anon.get("/api/auth/me", HTTP_X_ACCESS_TOKEN=after["token"]).status_code == 200


def test_refreshing_is_limited_per_client_address(anon, user, settings):
    settings.WORKGATE_REFRESH_RATE = "3/m"
    refresh = anon.post(
        "/api/auth/signin", {"email": user.email, "password": PASSWORD}, format="json"
    ).json()["refresh"]

    def exchange(ip: str):
        return anon.post("/api/auth/refresh", {"refresh": refresh}, format="json", REMOTE_ADDR=ip)

    answers = [exchange("203.0.113.7").status_code for _ in range(4)]
    elsewhere = exchange("198.51.100.7")

    assert answers == [200, 200, 200, 429]
    limited = exchange("203.0.113.7")
    assert limited.json()["code"] == "rate_limited" and int(limited["Retry-After"]) > 0
    assert elsewhere.status_code == 200
