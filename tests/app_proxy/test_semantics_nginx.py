"""Web apps behind the gateway as docs/deployment.md deploys them: its two nginx blocks as
written (ports, certificates, log paths and the apps domain's name changed) over HTTPS in front
of a Daphne process, to real apps: a JupyterLab terminal's WebSocket through the Upgrade map, an
SSE answer nginx does not hold back, a chunked upload it does not buffer, what the app hears of
the client, and no ticket in nginx's log."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import time

import pytest
from websockets.asyncio.client import connect

from tests.support import apps
from tests.support.database import orm
from tests.support.nginx import needs_nginx

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True), needs_nginx]

MB = 1024 * 1024


@pytest.fixture(scope="module")
def behind_nginx(django_db_setup, tmp_path_factory):
    with apps.app_gateway_behind_nginx(tmp_path_factory.mktemp("apps-nginx")) as gateway:
        yield gateway


@pytest.fixture
def opened(settings, behind_nginx, api):
    settings.WORKGATE_APPS_DOMAIN = behind_nginx.domain
    settings.WORKGATE_APP_UPSTREAM_NETWORKS = [ipaddress.ip_network(apps.UPSTREAM_NETWORKS)]

    async def open_app(url: str, **fields) -> tuple[str, str, str]:
        def open_it():
            runtime = apps.launched_runtime(api, apps.web_workspace(url, **fields))
            ticket_url = apps.app_url(api, runtime)
            entered = behind_nginx.enter(ticket_url)
            assert entered.status_code == 303, entered.text
            return runtime, apps.set_cookie_value(entered), ticket_url

        return await orm(open_it)

    return open_app


async def test_an_app_opened_over_https_hears_the_client_and_the_ticket_stays_out_of_the_log(
    opened, behind_nginx, httpbin_app
):
    runtime, cookie, ticket_url = await opened(httpbin_app.url)
    async with behind_nginx.client(runtime, cookie) as client:
        headers = (await client.get("/headers?show_env=1")).json()["headers"]

    assert ticket_url.startswith(f"https://{behind_nginx.host(runtime)}/.workgate/enter?")
    assert headers["X-Forwarded-Proto"] == "https"
    assert headers["X-Forwarded-For"] == "127.0.0.1"
    assert headers["X-Forwarded-Host"] == behind_nginx.host(runtime)
    log = (behind_nginx.log.parent / "apps-access.log").read_text()
    assert "/.workgate/enter" in log
    assert "ticket" not in log and cookie not in log


async def test_a_chunked_20_mb_upload_passes_through_nginx(opened, behind_nginx, httpbin_app):
    runtime, cookie, _ = await opened(httpbin_app.url)
    body = (b"fedcba9876543210" * 65536) * 20

    async def chunks():
        for start in range(0, len(body), MB):
            yield body[start : start + MB]

    async with behind_nginx.client(runtime, cookie, timeout=120) as client:
        response = await client.post("/anything", content=chunks())

    assert response.status_code == 200, response.text[:300]
    assert response.json()["data"].encode() == body


async def test_an_sse_answer_comes_through_nginx_within_100_ms(opened, behind_nginx, mcp_sse_app):
    runtime, cookie, _ = await opened(mcp_sse_app.url)
    async with (
        behind_nginx.client(runtime, cookie) as client,
        client.stream("GET", "/sse") as stream,
    ):
        lines = stream.aiter_lines()
        endpoint = await asyncio.wait_for(_data_after(lines, "event: endpoint"), 10)
        began = time.monotonic()
        posted = await client.post(
            endpoint,
            content=apps.mcp_request(7, "ping"),
            headers={"Content-Type": "application/json"},
        )
        answer = json.loads(await asyncio.wait_for(_data_after(lines, "event: message"), 10))
        took = time.monotonic() - began

    assert posted.status_code == 202
    assert answer == {"jsonrpc": "2.0", "id": 7, "result": {}}
    assert took < 0.1, took


async def test_a_lab_terminal_answers_over_wss_through_nginx(opened, behind_nginx, jupyter_app):
    runtime, cookie, _ = await opened(
        jupyter_app.url,
        app_credential_header="Authorization",
        app_credential=f"token {jupyter_app.token}",
    )
    origin = behind_nginx.origin(runtime)
    async with behind_nginx.client(runtime, cookie, headers={"Origin": origin}) as client:
        name = (await client.post("/api/terminals")).json()["name"]

    async with connect(
        f"wss://{behind_nginx.host(runtime)}/terminals/websocket/{name}",
        host="127.0.0.1",
        port=behind_nginx.port,
        ssl=behind_nginx.verify,
        server_hostname="127.0.0.1",
        origin=origin,
        additional_headers={"Cookie": f"{apps.ORIGIN_COOKIE}={cookie}"},
        open_timeout=20,
    ) as ws:
        await ws.send(json.dumps(["stdin", "echo behind-nginx-5 | rev\r"]))
        seen = ""
        while "5-xnign-dniheb" not in seen:
            message = json.loads(await asyncio.wait_for(ws.recv(), 20))
            if message[0] == "stdout":
                seen += message[1]


async def _data_after(lines, event_line: str) -> str:
    armed = False
    async for line in lines:
        if line == event_line:
            armed = True
        elif armed and line.startswith("data:"):
            return line.partition(":")[2].strip()
    raise AssertionError(f"the stream ended before {event_line!r}")
