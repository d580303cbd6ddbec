"""Every error an API client can meet has the one shape: {success: false, detail, code}."""

from __future__ import annotations

import time

import jwt
import pytest
from django.conf import settings
from rest_framework_simplejwt.utils import get_md5_hash_password

from accounts.tokens import new_access_token
from audit.models import AuditEntry
from tests.support.errors import assert_error_shape
from tests.support.signin import PASSWORD

pytestmark = pytest.mark.django_db


def test_no_token_is_401(anon):
    assert_error_shape(anon.get("/api/auth/me"), 401, "not_authenticated")


def _claims(user, **overrides):
    now = int(time.time())
    claims = {
        "token_type": "access",
        "exp": now + 3600,
        "iat": now,
        "jti": "0123456789abcdef",
        "user_id": str(user.pk),
        "mfa": False,
        "hash_password": get_md5_hash_password(user.password),
    }
    claims.update(overrides)
    return {key: value for key, value in claims.items() if value is not None}


@pytest.mark.parametrize(
    "make_token",
    [
        pytest.param(lambda user: "not-a-jwt", id="malformed"),
        pytest.param(
            lambda user: jwt.encode(_claims(user), "another key entirely, " * 3, algorithm="HS256"),
            id="forged",
        ),
        pytest.param(
            lambda user: jwt.encode(
                _claims(user, exp=int(time.time()) - 10), settings.SECRET_KEY, algorithm="HS256"
            ),
            id="expired",
        ),
        pytest.param(lambda user: jwt.encode(_claims(user), None, algorithm="none"), id="alg-none"),
        pytest.param(
            lambda user: jwt.encode(
                _claims(user, token_type="refresh"), settings.SECRET_KEY, algorithm="HS256"
            ),
            id="refresh-token-as-access",
        ),
        pytest.param(
            lambda user: jwt.encode(
                _claims(user, token_type="vnc_ticket"), settings.SECRET_KEY, algorithm="HS256"
            ),
            id="other-type",
        ),
        pytest.param(
            lambda user: jwt.encode(_claims(user), settings.SECRET_KEY * 2, algorithm="HS512"),
            id="other-algorithm",
        ),
    ],
)
@pytest.mark.parametrize("header", ["HTTP_X_ACCESS_TOKEN", "HTTP_AUTHORIZATION"])
def test_a_bad_token_is_401_in_either_header(anon, user, make_token, header):
    token = make_token(user)
    value = f"Bearer {token}" if header == "HTTP_AUTHORIZATION" else token

    response = anon.get("/api/auth/me", **{header: value})

    body = assert_error_shape(response, 401)
    assert body["code"] in ("token_not_valid", "authentication_failed")


def test_a_valid_token_built_the_same_way_is_accepted(anon, user):
    """The control for the test above: the hand-built claims are right when signed right."""
    token = jwt.encode(_claims(user), settings.SECRET_KEY, algorithm="HS256")
    assert anon.get("/api/auth/me", HTTP_X_ACCESS_TOKEN=token).status_code == 200


def test_a_deactivated_users_token_stops_working(anon, user):
    token = str(new_access_token(user, mfa=False))
    user.is_active = False
    user.save()

    assert_error_shape(anon.get("/api/auth/me", HTTP_X_ACCESS_TOKEN=token), 401)


@pytest.mark.urls("tests.config.probe_urls")
def test_an_admin_route_refuses_a_user_with_admin_access_required(api, admin_api):
    body = assert_error_shape(api.get("/api/probe/admin"), 403)
    assert body["detail"] == "Admin access required"
    assert admin_api.get("/api/probe/admin").status_code == 200


def test_unknown_api_paths_are_json_404(api, anon):
    assert_error_shape(api.get("/api/no/such/route"), 404, "not_found")
    assert_error_shape(anon.post("/api/nothing-here", {}), 404, "not_found")


def test_a_wrong_method_is_405(api):
    assert_error_shape(api.delete("/api/auth/me"), 405, "method_not_allowed")


def test_malformed_json_is_400(anon, db):
    response = anon.generic(
        "POST", "/api/auth/signin", b"{not json", content_type="application/json"
    )
    assert_error_shape(response, 400)


@pytest.mark.parametrize("body", ["[" * 100_000, '{"email": ' * 100_000], ids=["list", "object"])
def test_json_nested_too_deeply_is_400_not_a_server_error(anon, user, body):
    """Python's decoder raises RecursionError, not ValueError, some thousand levels down."""
    response = anon.generic("POST", "/api/auth/signin", body, content_type="application/json")

    assert_error_shape(response, 400, "parse_error")
    assert not AuditEntry.objects.exists()  # not a sign-in, failed or otherwise


@pytest.mark.urls("tests.config.probe_urls")
def test_a_server_error_is_json_without_internals(api):
    api.raise_request_exception = False

    response = api.get("/api/probe/boom")

    body = assert_error_shape(response, 500, "server_error")
    assert "hunter2" not in response.content.decode()
    assert "Traceback" not in response.content.decode()
    assert body == {"success": False, "detail": "Internal server error.", "code": "server_error"}


def test_sign_in_is_rate_limited_per_client_ip_with_retry_after(anon, user, settings):
    settings.WORKGATE_SIGNIN_RATE = "3/m"
    body = {"email": "alice@example.com", "password": "wrong"}

    statuses = [anon.post("/api/auth/signin", body, format="json").status_code for _ in range(3)]
    limited = anon.post("/api/auth/signin", {**body, "password": PASSWORD}, format="json")
    other_ip = anon.post(
        "/api/auth/signin", {**body, "password": PASSWORD}, format="json", REMOTE_ADDR="10.1.2.3"
    )

    assert statuses == [401, 401, 401]
    assert_error_shape(limited, 429, "rate_limited")
    assert 1 <= int(limited["Retry-After"]) <= 60
    assert other_ip.status_code == 200


def test_an_ipv6_client_is_counted_by_its_64_not_by_each_address(anon, user, settings):
    """A host holds a whole /64 and may send from any address in it: rotating them does not
    buy more guesses. Another /64 is another client."""
    settings.WORKGATE_SIGNIN_RATE = "3/m"

    def sign_in(ip: str, password: str):
        body = {"email": "alice@example.com", "password": password}
        return anon.post("/api/auth/signin", body, format="json", REMOTE_ADDR=ip)

    statuses = [sign_in(f"2001:db8:0:1::{n + 1:x}", "wrong").status_code for n in range(3)]
    rotated = sign_in("2001:db8:0:1:ffff:ffff:ffff:ffff", PASSWORD)
    elsewhere = sign_in("2001:db8:0:2::1", PASSWORD)

    assert statuses == [401, 401, 401]
    assert_error_shape(rotated, 429, "rate_limited")
    assert elsewhere.status_code == 200


def test_forwarded_for_is_ignored_from_untrusted_peers(anon, user, settings):
    settings.WORKGATE_SIGNIN_RATE = (
        "1/h"  # a window two requests a moment apart almost never straddle
    )
    body = {"email": "alice@example.com", "password": "wrong"}

    anon.post("/api/auth/signin", body, format="json", HTTP_X_FORWARDED_FOR="1.1.1.1")
    spoofed = anon.post("/api/auth/signin", body, format="json", HTTP_X_FORWARDED_FOR="2.2.2.2")

    assert spoofed.status_code == 429


def test_forwarded_for_is_believed_from_a_trusted_proxy(anon, user, settings):
    import ipaddress

    settings.WORKGATE_SIGNIN_RATE = (
        "1/h"  # a window two requests a moment apart almost never straddle
    )
    settings.WORKGATE_TRUSTED_PROXIES = [ipaddress.ip_network("127.0.0.0/8")]
    body = {"email": "alice@example.com", "password": "wrong"}

    first = anon.post("/api/auth/signin", body, format="json", HTTP_X_FORWARDED_FOR="1.1.1.1")
    second = anon.post("/api/auth/signin", body, format="json", HTTP_X_FORWARDED_FOR="2.2.2.2")

    assert (first.status_code, second.status_code) == (401, 401)
    assert sorted(AuditEntry.objects.values_list("ip_address", flat=True)) == ["1.1.1.1", "2.2.2.2"]


def test_a_body_over_the_upload_limit_is_a_json_400(anon, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    body = '{"email": "a@example.com", "password": "' + "x" * 2048 + '"}'

    response = anon.generic("POST", "/api/auth/signin", body, content_type="application/json")

    assert_error_shape(response, 400, "too_large")


def test_too_many_query_fields_is_a_json_400(api):
    query = "&".join(f"p{n}=1" for n in range(1200))

    assert_error_shape(api.get(f"/api/sessions?{query}"), 400, "too_many_fields")


def test_a_host_not_allowed_is_a_json_400_on_the_api_and_a_page_elsewhere(api, client):
    assert_error_shape(api.get("/api/sessions", HTTP_HOST="evil.example"), 400, "bad_request")
    page = client.get("/login", HTTP_HOST="evil.example")
    assert page.status_code == 400 and page["Content-Type"].startswith("text/html")
