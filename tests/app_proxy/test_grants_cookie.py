"""The app-session cookie as a browser receives it: spending an app ticket at the app's door
(`/.workgate/enter`) through the gateway's real ASGI application (config.asgi: the proxy's
router in front of Django), in this process. The data plane's own tests do the same through a
Daphne and a real browser."""

from __future__ import annotations

from http.cookies import SimpleCookie

import httpx
import pytest

from app_proxy.models import AppGrant
from config.asgi import application
from tests.app_proxy.conftest import ask_app_ticket
from tests.support.database import orm

pytestmark = pytest.mark.django_db(transaction=True)


async def door(url: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=application, client=("127.0.0.1", 50000))
    async with httpx.AsyncClient(transport=transport) as client:
        return await client.get(url, headers={"User-Agent": "pytest-agent/1"})


async def test_entering_sets_a_host_only_secure_httponly_lax_cookie_for_the_apps_origin(
    api, app_runtime
):
    app_url = (await orm(ask_app_ticket, api, app_runtime.runtime_id)).json()["appUrl"]
    assert app_url.startswith(f"https://{app_runtime.runtime_id}.apps.example.test/")

    response = await door(app_url)

    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/"
    assert response.headers["cache-control"] == "no-store"
    [header] = response.headers.get_list("set-cookie")
    cookie = SimpleCookie()
    cookie.load(header)
    [(name, morsel)] = cookie.items()
    assert name == "__Host-workgate-app"  # the browser keeps it only host-only, Secure, Path=/
    assert morsel["path"] == "/" and not morsel["domain"]
    assert morsel["httponly"] and morsel["secure"] and morsel["samesite"] == "Lax"
    grant = await orm(AppGrant.objects.get)
    assert 0 < int(morsel["max-age"]) <= (grant.expires_at - grant.created_at).total_seconds()
    assert morsel.value != grant.id and grant.id[:12] not in header

    again = await door(app_url)
    assert again.status_code == 401 and "set-cookie" not in again.headers
    assert again.json() == {
        "success": False,
        "detail": "This app ticket was used already.",
        "code": "ticket_used",
    }
