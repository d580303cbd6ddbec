"""The middleware stack under ASGI (config/middleware.py), served by a real Daphne process: the
hooks that only compute run on the event loop, and everything Django's own middleware does is
still done, the database writes of sessions and messages included."""

from __future__ import annotations

import re

import httpx
import pytest
from django.conf import settings

from audit.models import AuditEntry
from config import middleware
from tests.support import processes
from tests.support.signin import PASSWORD, token_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def server(django_db_setup, tmp_path_factory):
    log = tmp_path_factory.mktemp("daphne") / "daphne.log"
    # Plain http on loopback; the first hop is a trusted proxy (its X-Forwarded-For counts).
    environment = {"SESSION_COOKIE_SECURE": "0", "WORKGATE_TRUSTED_PROXIES": "127.0.0.1/32"}
    with processes.daphne(log, **environment) as port:
        yield f"http://127.0.0.1:{port}"


def sign_in(client: httpx.Client, email: str, password: str, **headers) -> httpx.Response:
    form = client.get("/login")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
    return client.post(
        "/login",
        data={"csrfmiddlewaretoken": token, "email": email, "password": password},
        headers=headers,
    )


def test_signing_in_and_out_keeps_the_session_and_the_message(server, user):
    with httpx.Client(base_url=server) as client:
        signed_in = sign_in(client, user.email, PASSWORD)
        assert (signed_in.status_code, signed_in.headers["location"]) == (302, "/")
        catalog = client.get("/")
        assert catalog.status_code == 200
        assert user.email in catalog.text  # the saved session signed this request in

        csrf = client.cookies["csrftoken"]
        signed_out = client.post("/logout", headers={"X-CSRFToken": csrf})
        assert signed_out.status_code == 302
        login_page = client.get(signed_out.headers["location"])
        assert "You are signed out." in login_page.text  # the message survived the redirect
        assert client.get("/").status_code == 302  # and the session is gone

    actions = list(AuditEntry.objects.order_by("id").values_list("action", "success"))
    assert actions == [("login", True), ("logout", True)]


def test_a_page_post_without_its_csrf_token_is_refused_and_changes_nothing(server, user):
    with httpx.Client(base_url=server) as client:
        response = client.post("/login", data={"email": user.email, "password": PASSWORD})

    assert response.status_code == 403
    assert not AuditEntry.objects.exists()


def test_an_api_answer_carries_the_security_headers(server, user):
    response = httpx.get(f"{server}/api/auth/me", headers={"x-access-token": token_for(user)})

    assert response.status_code == 200
    assert response.json()["profile"]["email"] == user.email
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "same-origin"


def test_the_address_a_trusted_proxy_forwards_is_the_one_audited(server, user):
    with httpx.Client(base_url=server) as client:
        sign_in(client, user.email, "wrong", **{"X-Forwarded-For": "203.0.113.9"})

    failed = AuditEntry.objects.get(action="login_failed")
    assert failed.ip_address == "203.0.113.9"


def test_every_django_middleware_in_the_stack_is_its_event_loop_variant():
    replaced = {
        "django.middleware.security.SecurityMiddleware": middleware.SecurityMiddleware,
        "django.contrib.sessions.middleware.SessionMiddleware": middleware.SessionMiddleware,
        "django.middleware.common.CommonMiddleware": middleware.CommonMiddleware,
        "django.middleware.csrf.CsrfViewMiddleware": middleware.CsrfViewMiddleware,
        "django.contrib.auth.middleware.AuthenticationMiddleware": (
            middleware.AuthenticationMiddleware
        ),
        "django.contrib.messages.middleware.MessageMiddleware": middleware.MessageMiddleware,
        "django.middleware.clickjacking.XFrameOptionsMiddleware": (
            middleware.XFrameOptionsMiddleware
        ),
        "whitenoise.middleware.WhiteNoiseMiddleware": middleware.WhiteNoiseMiddleware,
    }
    assert not set(replaced) & set(settings.MIDDLEWARE)
    for original, variant in replaced.items():
        assert f"config.middleware.{variant.__name__}" in settings.MIDDLEWARE
        module, _, name = original.rpartition(".")
        assert issubclass(variant, getattr(__import__(module, fromlist=[name]), name))
