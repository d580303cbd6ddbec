"""Attacks on web apps behind the gateway (issue 21), through the real app proxy (a Daphne
process on the test database) to real apps: httpbin, and JupyterLab for WebSockets. What the
attacker sees, and what the database and the app say happened. The control plane's own tests
(test_tickets.py, test_launch_pinning.py) cover the same rules in this process; these go through
the app's origin as a browser, or a script posing as one, would."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from app_proxy.models import AppGrant
from sessions_app.models import WorkspaceSession
from sessions_app.provisioners import web
from tests.support import apps
from tests.support.database import orm, orm_until
from tests.support.signin import token_for
from vnc_proxy import tickets

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

SIGN_OUT_EVERYWHERE = "/api/auth/signout-everywhere"


async def opened(api, gateway, url: str, **fields) -> tuple[str, str]:
    return await orm(lambda: apps.open_app(api, gateway, url, **fields))


def refused(response, status: int | tuple[int, ...]) -> dict:
    """A refusal by the gateway in the one error shape (never an answer of the app's), from
    httpx or Django's test client."""
    statuses = (status,) if isinstance(status, int) else status
    assert response.status_code in statuses, (response.status_code, response.content[:300])
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["success"] is False
    assert isinstance(body["detail"], str) and body["detail"]
    assert isinstance(body["code"], str) and body["code"]
    return body


async def test_another_users_app_origin_refuses_your_cookie_and_no_cookie(
    app_settings, app_gateway, httpbin_app, api, other_user, client_for
):
    mine, my_cookie = await opened(api, app_gateway, httpbin_app.url)
    theirs, _ = await opened(client_for(other_user), app_gateway, httpbin_app.url)

    async with app_gateway.client(theirs, my_cookie) as client:
        with_mine = await client.get("/headers")
    async with app_gateway.client(theirs) as client:
        without = await client.get("/headers")
        reserved = await client.get("/.workgate/anything")
    async with app_gateway.client(mine, my_cookie) as client:
        own = await client.get("/headers")

    refused(with_mine, (401, 403))
    assert refused(without, 401)["code"] == "app_sign_in_required"
    refused(reserved, (401, 404))
    assert "X-Workgate-Assertion" not in with_mine.text
    assert own.status_code == 200  # the cookie is good, on its own origin


async def test_a_cookie_from_one_app_origin_is_refused_on_another_of_the_same_user(
    app_settings, app_gateway, httpbin_app, api
):
    first, cookie = await opened(api, app_gateway, httpbin_app.url, name="First")
    second, _ = await opened(api, app_gateway, httpbin_app.url, name="Second")

    async with app_gateway.client(second, cookie) as client:
        replayed = await client.get("/cookies")
    async with app_gateway.client(first, cookie) as client:
        own = await client.get("/cookies")

    refused(replayed, (401, 403))
    assert own.status_code == 200


async def test_a_replayed_ticket_opens_nothing_and_no_log_holds_it(
    app_settings, app_gateway, httpbin_app, api
):
    runtime = await orm(lambda: apps.launched_runtime(api, apps.web_workspace(httpbin_app.url)))
    url = await orm(lambda: apps.app_url(api, runtime))

    first = await asyncio.to_thread(app_gateway.enter, url)
    again = await asyncio.to_thread(app_gateway.enter, url)

    assert first.status_code == 303 and apps.set_cookie_value(first)
    assert refused(again, 401)["code"] == "ticket_used"
    assert apps.set_cookie_value(again) is None
    assert await orm(lambda: AppGrant.objects.filter(session__runtime_id=runtime).count()) == 1
    # Neither the ticket nor the cookie is in the gateway's log (Daphne's and the proxy's).
    log = app_gateway.log.read_text()
    assert "/.workgate/enter" in log
    assert parse_qs(urlsplit(url).query)["ticket"][0] not in log
    assert apps.set_cookie_value(first) not in log


async def test_an_expired_ticket_opens_nothing(
    app_settings, app_gateway, httpbin_app, api, monkeypatch
):
    """The ticket is minted 61 seconds in the past (the tickets' clock moved here, in the
    process that mints it): the gateway's process, on the real clock, finds it expired."""
    runtime = await orm(lambda: apps.launched_runtime(api, apps.web_workspace(httpbin_app.url)))
    real_now = tickets.now
    monkeypatch.setattr(tickets, "now", lambda: real_now() - timedelta(seconds=61))
    url = await orm(lambda: apps.app_url(api, runtime))
    monkeypatch.setattr(tickets, "now", real_now)

    entered = await asyncio.to_thread(app_gateway.enter, url)

    refused(entered, 401)
    assert apps.set_cookie_value(entered) is None
    assert not await orm(lambda: AppGrant.objects.filter(session__runtime_id=runtime).exists())


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://10.1.2.3:8080/", "app_upstream_not_allowed"),  # outside 127.0.0.0/8
        ("http://169.254.169.254/latest/meta-data/", "app_upstream_denied"),  # cloud metadata
        ("http://127.0.0.1:6379/", "app_upstream_denied"),  # the gateway's own Redis
        ("http://127.0.0.1:5432/", "app_upstream_denied"),  # its database
    ],
)
def test_an_upstream_outside_the_allowed_networks_or_on_the_deny_list_is_never_launched(
    app_settings, api, url, code
):
    workspace = apps.web_workspace(url)

    response = api.post(f"/api/workspaces/{workspace.id}/launch")

    assert refused(response, 403)["code"] == code
    assert not WorkspaceSession.objects.filter(
        workspace=workspace, status__in=WorkspaceSession.LIVE
    ).exists()


async def test_a_name_that_resolves_elsewhere_after_launch_still_reaches_the_pinned_address(
    app_settings, app_gateway, httpbin_app, api, names
):
    """DNS rebinding: the launch resolved app.rebind.test to 127.0.0.1 and pinned it; the name
    now resolves to another address (and, in the gateway's process, to nothing at all), yet the
    proxy keeps dialling the pinned address, with the name as Host."""
    names["app.rebind.test"] = ["127.0.0.1"]
    runtime, cookie = await opened(api, app_gateway, f"http://app.rebind.test:{httpbin_app.port}/")
    names["app.rebind.test"] = ["10.66.0.1"]

    async with app_gateway.client(runtime, cookie) as client:
        response = await client.get("/headers")

    assert response.status_code == 200
    assert response.json()["headers"]["Host"] == f"app.rebind.test:{httpbin_app.port}"
    session = await orm(lambda: WorkspaceSession.objects.get(runtime_id=runtime))
    assert session.upstream_address == "127.0.0.1"
    assert web.resolve("app.rebind.test", httpbin_app.port) == ["10.66.0.1"]


async def test_an_app_cannot_set_a_cookie_for_other_apps_or_the_apps_domain(
    app_settings, app_gateway, httpbin_app, api
):
    """An app (or a script it serves) that sets a cookie for the whole apps domain would plant
    it in every other app's requests: the proxy makes every cookie an app sets host-only."""
    runtime, cookie = await opened(api, app_gateway, httpbin_app.url)
    tossed = "planted=1; Domain=apps.localhost; Path=/"
    async with app_gateway.client(runtime, cookie) as client:
        response = await client.get("/response-headers", params={"Set-Cookie": tossed})

    assert response.status_code == 200
    (set_cookie,) = response.headers.get_list("set-cookie")
    assert set_cookie.startswith("planted=1")
    assert "domain" not in set_cookie.lower()


async def test_the_gateways_api_is_not_reachable_on_an_app_origin(
    app_settings, app_gateway, httpbin_app, api, user
):
    """Every path on an app's origin is the app's: the gateway's API is not there for the app's
    scripts to call, even with the user's access token."""
    runtime, cookie = await opened(api, app_gateway, httpbin_app.url)
    token = await orm(lambda: token_for(user))
    epoch = user.sign_in_epoch
    async with app_gateway.client(runtime, cookie, headers={"x-access-token": token}) as client:
        response = await client.post(SIGN_OUT_EVERYWHERE)

    assert response.status_code == 404  # httpbin's answer: no such page
    assert "X-Workgate-Assertion" not in response.text
    await orm(user.refresh_from_db)
    assert user.sign_in_epoch == epoch


# --- WebSockets: JupyterLab's terminal ----------------------------------------------------------


async def lab_terminal(gateway, runtime: str, cookie: str) -> str:
    async with gateway.client(runtime, cookie, headers={"Origin": gateway.origin(runtime)}) as c:
        made = await c.post("/api/terminals")
    assert made.status_code == 200, made.text[:300]
    return made.json()["name"]


def terminal(gateway, runtime: str, cookie: str, name: str, *, origin: str | None = None):
    """The lab terminal's WebSocket on the app's origin, as a browser opens it."""
    return connect(
        f"ws://{gateway.host(runtime)}/terminals/websocket/{name}",
        host="127.0.0.1",
        port=gateway.port,
        origin=origin or gateway.origin(runtime),
        additional_headers={"Cookie": f"{apps.ORIGIN_COOKIE}={cookie}"},
        open_timeout=20,
    )


async def echo(ws, word: str) -> None:
    await ws.send(json.dumps(["stdin", f"echo {word} | rev\r"]))
    seen = ""
    while word[::-1] not in seen:
        message = json.loads(await asyncio.wait_for(ws.recv(), 20))
        if message[0] == "stdout":
            seen += message[1]


async def closed_within(ws, seconds: float) -> float:
    began = time.monotonic()
    with pytest.raises(ConnectionClosed):
        while True:
            await asyncio.wait_for(ws.recv(), seconds + 5)
    return time.monotonic() - began


@pytest.fixture
def lab_opened(app_settings, app_gateway, jupyter_app, api):
    """As `api`'s user: (workspace, runtime id, cookie) of the lab, its token the credential."""

    def open_lab():
        workspace = apps.jupyter_workspace(jupyter_app)
        runtime = apps.launched_runtime(api, workspace)
        return workspace, runtime, apps.app_cookie(api, app_gateway, runtime)

    return lambda: orm(open_lab)


async def test_a_websocket_from_a_foreign_origin_is_refused(app_gateway, lab_opened):
    _, runtime, cookie = await lab_opened()
    name = await lab_terminal(app_gateway, runtime, cookie)

    with pytest.raises(InvalidStatus) as foreign:
        async with terminal(app_gateway, runtime, cookie, name, origin="http://evil.example"):
            pass
    with pytest.raises(InvalidStatus) as gateways:
        async with terminal(
            app_gateway, runtime, cookie, name, origin=f"http://127.0.0.1:{app_gateway.port}"
        ):
            pass
    async with terminal(app_gateway, runtime, cookie, name) as ws:
        await echo(ws, "own-origin-41")

    assert foreign.value.response.status_code == 403
    assert gateways.value.response.status_code == 403


async def test_the_terminal_closes_within_a_second_of_a_stop(app_gateway, lab_opened, api):
    workspace, runtime, cookie = await lab_opened()
    name = await lab_terminal(app_gateway, runtime, cookie)

    async with terminal(app_gateway, runtime, cookie, name) as ws:
        await echo(ws, "before-stop-7")
        stopped = await orm(lambda: api.post(f"/api/workspaces/{workspace.id}/stop"))
        took = await closed_within(ws, 1.0)
    async with app_gateway.client(runtime, cookie) as client:
        after = await client.get("/api/status")

    assert stopped.status_code == 200
    assert took < 1.0, took
    refused(after, (401, 403, 404))
    grant = await orm_until(
        lambda: AppGrant.objects.filter(session__runtime_id=runtime, ended_at__isnull=False).first()
    )
    assert grant.end_reason


async def test_the_terminal_closes_within_a_second_of_signing_out_everywhere(
    app_gateway, lab_opened, api
):
    _, runtime, cookie = await lab_opened()
    name = await lab_terminal(app_gateway, runtime, cookie)

    async with terminal(app_gateway, runtime, cookie, name) as ws:
        await echo(ws, "before-sign-out-9")
        signed_out = await orm(lambda: api.post(SIGN_OUT_EVERYWHERE))
        took = await closed_within(ws, 1.0)
    async with app_gateway.client(runtime, cookie) as client:
        after = await client.get("/api/status")

    assert signed_out.status_code == 200
    assert took < 1.0, took
    refused(after, (401, 403))
    with pytest.raises(InvalidStatus):
        async with terminal(app_gateway, runtime, cookie, name):
            pass
