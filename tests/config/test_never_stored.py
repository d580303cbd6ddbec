"""Nothing Workgate renders is kept by a browser or a proxy (config.middleware.NeverStored):
tokens, an enrolment's secret, pages of someone's data. Static files are."""

from __future__ import annotations

import pytest

from tests.support.signin import PASSWORD

pytestmark = pytest.mark.django_db


def assert_never_stored(response) -> None:
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"] and "private" in response["Cache-Control"]


def test_tokens_and_an_enrolment_secret_are_never_stored(anon, user, client_for):
    signed_in = anon.post(
        "/api/auth/signin", {"email": user.email, "password": PASSWORD}, format="json"
    )
    refreshed = anon.post(
        "/api/auth/refresh", {"refresh": signed_in.json()["refresh"]}, format="json"
    )
    enrolment = client_for(user).post("/api/auth/mfa/setup", {"password": PASSWORD}, format="json")

    for response in (signed_in, refreshed, enrolment):
        assert_never_stored(response)


@pytest.mark.parametrize("path", ["/", "/sessions", "/audit", "/assistant"])
def test_signed_in_pages_are_never_stored(browser_for, admin_user, path):
    assert_never_stored(browser_for(admin_user).get(path))


def test_static_files_keep_their_own_lifetime(client):
    response = client.get("/static/workgate/app.css")

    assert response.status_code == 200
    assert "no-store" not in response.get("Cache-Control", "")
