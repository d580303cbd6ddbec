"""HTTP through the app proxy to real apps (issue 21), as a browser on the app's origin sees it:
httpbin for redirects, streamed and slow bodies, uploads and what the upstream received;
JupyterLab for a 100 MB download; npm's MCP server for an SSE answer on an open stream. The proxy
runs in a Daphne process on the test database (the `app_gateway` fixture); launches and tickets go
through the API in this process (`app_settings` makes its settings the gateway's)."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import jwt
import pytest
from django.conf import settings

from sessions_app.models import WorkspaceSession
from tests.support import apps
from tests.support.database import orm
from tests.support.processes import daphne_pid, rss_mib
from tests.support.signin import token_for

# The gateway's own cookies under the names it gives them (__Host- ones over https).
GATEWAY_COOKIES = f"{settings.SESSION_COOKIE_NAME}=gw-session; {settings.CSRF_COOKIE_NAME}=gw-csrf"
pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

MB = 1024 * 1024


@pytest.fixture
def opened(app_settings, app_gateway, api):
    """Open a real app as `api`'s user: (runtime id, app cookie) for a workspace at `url`."""

    async def open_app(url: str, **fields) -> tuple[str, str]:
        return await orm(lambda: apps.open_app(api, app_gateway, url, **fields))

    return open_app


async def test_a_redirect_to_the_apps_own_origin_comes_back_naming_the_app_origin(
    opened, app_gateway, httpbin_app
):
    runtime, cookie = await opened(httpbin_app.url)
    origin = app_gateway.origin(runtime)
    async with app_gateway.client(runtime, cookie) as client:
        absolute = await client.get("/absolute-redirect/1")
        relative = await client.get("/relative-redirect/1")
        chain = await client.get("/redirect/3")

    # httpbin names its own origin (http://127.0.0.1:<port>/get): the browser is sent to the
    # app's origin instead, never to the upstream it cannot (and must not) reach.
    assert absolute.status_code == 302
    assert absolute.headers["location"] == f"{origin}/get"
    assert relative.status_code == 302
    assert relative.headers["location"] == "/get"
    assert chain.status_code == 302
    assert f"127.0.0.1:{httpbin_app.port}" not in chain.headers["location"]


async def test_a_streamed_answer_arrives_whole_and_chunked(opened, app_gateway, httpbin_app):
    runtime, cookie = await opened(httpbin_app.url)
    async with (
        app_gateway.client(runtime, cookie) as client,
        client.stream("GET", "/stream/50") as response,
    ):
        lines = [json.loads(line) async for line in response.aiter_lines() if line]

    assert response.status_code == 200
    assert "content-length" not in response.headers
    assert [line["id"] for line in lines] == list(range(50))


async def test_a_slow_answer_is_passed_on_as_it_is_written_not_when_it_ends(
    opened, app_gateway, httpbin_app
):
    """httpbin's /drip writes 4 bytes over 2 s: a proxy that buffered would deliver them all at
    the end; through the app proxy the first arrives at once and the rest as they come."""
    runtime, cookie = await opened(httpbin_app.url)
    arrivals = []
    async with app_gateway.client(runtime, cookie) as client:
        began = time.monotonic()
        async with client.stream("GET", "/drip?duration=2&numbytes=4&delay=0&code=200") as resp:
            async for chunk in resp.aiter_raw():
                arrivals.extend([time.monotonic() - began] * len(chunk))

    assert len(arrivals) == 4
    assert arrivals[0] < 0.9, arrivals
    assert arrivals[-1] > 1.2, arrivals
    assert arrivals[-1] - arrivals[0] > 1.0, arrivals


@pytest.mark.parametrize("framing", ["sized", "chunked"])
async def test_a_20_mb_upload_reaches_the_app_intact(opened, app_gateway, httpbin_app, framing):
    runtime, cookie = await opened(httpbin_app.url)
    body = (b"0123456789abcdef" * 65536) * 20  # 20 MiB of ASCII: httpbin echoes it as text

    async def chunks():
        for start in range(0, len(body), MB):
            yield body[start : start + MB]

    content = body if framing == "sized" else chunks()
    async with app_gateway.client(runtime, cookie, timeout=120) as client:
        response = await client.put("/put", content=content)

    assert response.status_code == 200, response.text[:300]
    echoed = response.json()
    assert len(echoed["data"]) == len(body)
    assert echoed["data"].encode() == body


async def test_the_upstream_never_sees_the_gateways_cookies_tokens_or_the_app_cookie(
    opened, app_gateway, httpbin_app, user
):
    """What the app receives: its own cookies, the identity assertion (checked here against the
    gateway's published keys) and X-Forwarded-*; never the gateway's session or CSRF cookie, an
    access token, or the app cookie itself, whatever the browser sends along."""
    runtime, cookie = await opened(httpbin_app.url)
    token = await orm(lambda: token_for(user))
    sent = {
        "Cookie": f"{apps.ORIGIN_COOKIE}={cookie}; {GATEWAY_COOKIES}; theme=dark",
        "Authorization": f"Bearer {token}",
        "x-access-token": token,
    }
    async with app_gateway.client(runtime, headers=sent) as client:
        # show_env: httpbin hides X-Forwarded-* otherwise
        headers = (await client.get("/headers?show_env=1")).json()["headers"]
        cookies = (await client.get("/cookies")).json()["cookies"]
    async with httpx.AsyncClient(base_url=app_gateway.base_url) as client:
        jwks = (await client.get("/.well-known/workgate-jwks.json")).json()

    assert cookies == {"theme": "dark"}
    received = json.dumps(headers)
    for secret in (cookie, token, "gw-session", "gw-csrf"):
        assert secret not in received
    assert "Authorization" not in headers
    assert "X-Access-Token" not in headers
    assert headers["Host"] == f"127.0.0.1:{httpbin_app.port}"
    assert headers["X-Forwarded-Host"] == app_gateway.host(runtime)
    assert headers["X-Forwarded-Proto"] == "http"
    assert headers["X-Forwarded-For"] == "127.0.0.1"

    assertion = headers["X-Workgate-Assertion"]
    kid = jwt.get_unverified_header(assertion)["kid"]
    key = jwt.PyJWKSet.from_dict(jwks)[kid]
    session = await apps_session(runtime)
    claims = jwt.decode(
        assertion, key.key, algorithms=["ES256", "RS256"], audience=str(session.workspace_id)
    )
    assert claims["sub"] == str(user.pk)
    assert claims["email"] == user.email
    assert claims["exp"] - claims["iat"] <= 60


async def apps_session(runtime: str) -> WorkspaceSession:
    return await orm(lambda: WorkspaceSession.objects.get(runtime_id=runtime))


async def test_a_100_mb_download_streams_through_with_the_servers_memory_flat(
    opened, app_gateway, jupyter_app
):
    runtime, cookie = await opened(
        jupyter_app.url,
        app_credential_header="Authorization",
        app_credential=f"token {jupyter_app.token}",
    )
    path = apps.large_file(jupyter_app, name="download.bin")
    pid = daphne_pid(app_gateway.port)
    before, peak, done = rss_mib(pid), [0.0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_mib(pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    received = 0
    try:
        async with (
            app_gateway.client(runtime, cookie, timeout=120) as client,
            client.stream("GET", path) as response,
        ):
            assert response.status_code == 200
            async for chunk in response.aiter_raw():
                received += len(chunk)
    finally:
        done.set()
        sampler.join()

    assert received == 100 * MB
    # The body is never held: the server grows by a small part of it at most.
    assert peak[0] - before < 40, (before, peak[0])


async def test_an_sse_answer_arrives_on_the_open_stream_within_100_ms_of_the_post(
    opened, app_gateway, mcp_sse_app
):
    """npm's MCP server: GET /sse holds an event stream whose first event names the endpoint;
    the answer to a JSON-RPC POST there comes on the stream, which the proxy must not buffer."""
    runtime, cookie = await opened(mcp_sse_app.url)
    async with (
        app_gateway.client(runtime, cookie) as client,
        client.stream("GET", "/sse", headers={"Accept": "text/event-stream"}) as stream,
    ):
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.aiter_lines()
        endpoint = await asyncio.wait_for(_event(lines, "endpoint"), 10)
        assert endpoint.startswith("/message?sessionId=")

        began = time.monotonic()
        posted = await client.post(
            endpoint,
            content=apps.mcp_request(1, "initialize", apps.MCP_INITIALIZE),
            headers={"Content-Type": "application/json"},
        )
        answer = json.loads(await asyncio.wait_for(_event(lines, "message"), 10))
        took = time.monotonic() - began

    assert posted.status_code == 202
    assert answer["id"] == 1
    assert "serverInfo" in answer["result"]
    assert took < 0.1, took


async def _event(lines, name: str) -> str:
    """The data of the next event called `name` on an SSE stream's lines."""
    event = None
    async for line in lines:
        if line.startswith("event:"):
            event = line.partition(":")[2].strip()
        elif line.startswith("data:") and event == name:
            return line.partition(":")[2].strip()
    raise AssertionError(f"the stream ended before a {name} event")
