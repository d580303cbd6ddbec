"""HTTP through the app proxy (issue 21) as a browser and the app each see it, on a real Daphne
process (`app_gateway`): the router's answers for names and paths that are not an app, what
reaches the upstream (and what never does), Origin, the size limit, timeouts and an unreachable
app in the one error shape, a long answer that ends with the session, the access log, and an app
under `/apps/<runtime-id>/` on a gateway without an apps domain.

The upstream that records what it received is a raw HTTP/1.1 server on a socket: httpbin (the
real app of tests/app_proxy/test_semantics.py) hides X-Forwarded-* and never shows the request
line, which is what these tests look at."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import time

import httpx
import jwt
import pytest
from django.conf import settings

from tests.support import apps
from tests.support.database import orm
from tests.support.processes import daphne_pid, free_port, rss_mib

# The gateway's own cookies under the names it gives them (__Host- ones over https).
GATEWAY_COOKIES = f"{settings.SESSION_COOKIE_NAME}=gw-session; {settings.CSRF_COOKIE_NAME}=gw-csrf"
pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

MB = 1024 * 1024


class Recorder:
    """An HTTP/1.1 upstream on loopback that answers every request `200 ok` (kept alive) and
    keeps each request's head: the request line and headers (names in lower case)."""

    def __init__(self):
        self.heads: list[tuple[str, dict[str, str]]] = []
        self.port = free_port()
        self.hang = False  # read requests and never answer
        self.connections = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    async def _serve(self, reader, writer) -> None:
        self.connections += 1
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                line, *fields = head.split("\r\n")[:-2]
                headers = {}
                for field in fields:
                    name, _, value = field.partition(":")
                    headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0"))
                while length:  # read and dropped: a large upload is never held here
                    length -= len(await reader.read(min(length, 1 << 20)))
                if headers.get("transfer-encoding") == "chunked":
                    while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                        while size:
                            size -= len(await reader.read(min(size, 1 << 20)))
                        await reader.readexactly(2)
                    await reader.readuntil(b"\r\n")
                self.heads.append((line, headers))
                if self.hang:
                    await asyncio.sleep(3600)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        writer.close()

    async def __aenter__(self):
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc):
        self._server.close()


@pytest.fixture
async def recorder():
    async with Recorder() as upstream:
        yield upstream


@pytest.fixture
def opened(app_settings, app_gateway, api):
    """Launch a web workspace at `url` as `api`'s user and open it: (workspace, runtime, cookie)."""

    def open_app(url: str, **fields) -> tuple:
        workspace = apps.web_workspace(url, **fields)
        runtime = apps.launched_runtime(api, workspace)
        return workspace, runtime, apps.app_cookie(api, app_gateway, runtime)

    async def opener(url: str, **fields):
        return await orm(lambda: open_app(url, **fields))

    return opener


def error_of(response: httpx.Response) -> str:
    body = response.json()
    assert body["success"] is False and body["detail"], body
    return body["code"]


async def test_a_name_under_the_apps_domain_naming_no_app_is_404_and_the_gateway_is_untouched(
    app_gateway,
):
    async with httpx.AsyncClient(base_url=app_gateway.base_url) as client:
        nobody = await client.get("/", headers={"Host": f"www.{app_gateway.domain}"})
        unknown = await client.get("/", headers={"Host": app_gateway.host("wg-0123456789ab")})
        gateway = await client.get("/api/workspaces")
        prefix = await client.get("/apps/wg-0123456789ab/")

    assert nobody.status_code == 404 and error_of(nobody) == "not_found"
    assert unknown.status_code in (401, 404) and error_of(unknown)
    assert gateway.status_code == 401 and error_of(gateway) == "not_authenticated"
    # Under a prefix, a runtime that is no live app of anyone's is refused by admission too.
    assert prefix.status_code in (401, 404)


async def test_the_upstream_gets_the_proxys_headers_and_none_of_the_gateways(
    opened, app_gateway, recorder, user
):
    _, runtime, cookie = await opened(recorder.url)
    sent = {
        "Cookie": f"{apps.ORIGIN_COOKIE}={cookie}; {GATEWAY_COOKIES}; "
        "__Secure-workgate-app-wg-0123456789ab=other-app; theme=dark",
        "Authorization": "Bearer gw-token",
        "X-Access-Token": "gw-token-2",
        "X-Workgate-Assertion": "forged",
        "X-Forwarded-For": "6.6.6.6",
        "X-Forwarded-Host": "evil.example",
        "Forwarded": "for=6.6.6.6",
        "Connection": "keep-alive, X-Hop",
        "X-Hop": "hop-by-hop",
        "TE": "trailers",
        "X-Custom": "kept",
    }
    async with httpx.AsyncClient(base_url=app_gateway.base_url) as client:
        response = await client.get(
            "/some/path?q=1&ticket=not-ours", headers={"Host": app_gateway.host(runtime), **sent}
        )
        jwks = (await client.get("/.well-known/workgate-jwks.json")).json()

    assert response.status_code == 200 and response.text == "ok"
    [(line, headers)] = recorder.heads
    assert line == "GET /some/path?q=1&ticket=not-ours HTTP/1.1"
    assert headers["host"] == f"127.0.0.1:{recorder.port}"
    assert headers["cookie"] == "theme=dark"
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-host"] == app_gateway.host(runtime)
    assert headers["x-custom"] == "kept"
    for name in ("authorization", "x-access-token", "forwarded", "x-hop", "te", "origin"):
        assert name not in headers
    received = json.dumps(headers)
    for secret in (cookie, "gw-session", "gw-csrf", "gw-token", "other-app", "forged"):
        assert secret not in received
    # The assertion is the gateway's, and an app checks it with the published keys.
    assertion = headers["x-workgate-assertion"]
    key = jwt.PyJWKSet.from_dict(jwks)[jwt.get_unverified_header(assertion)["kid"]]
    claims = jwt.decode(
        assertion, key=key, algorithms=["ES256", "RS256"], options={"verify_aud": False}
    )
    assert claims["sub"] == str(user.pk) and claims["email"] == user.email


async def test_requests_reuse_kept_alive_connections_to_the_app(opened, app_gateway, recorder):
    _, runtime, cookie = await opened(recorder.url)
    async with app_gateway.client(runtime, cookie) as client:
        for n in range(20):
            assert (await client.get(f"/n/{n}")).status_code == 200

    assert len(recorder.heads) == 20
    assert recorder.connections == 1


async def test_the_apps_cookies_stay_host_only_on_its_origin(opened, app_gateway, httpbin_app):
    _, runtime, cookie = await opened(httpbin_app.url)
    async with app_gateway.client(runtime, cookie) as client:
        response = await client.get(
            "/response-headers",
            params=[
                ("Set-Cookie", "wide=1; Domain=apps.localhost; Path=/"),
                ("Set-Cookie", f"own=2; domain={app_gateway.host(runtime)}; HttpOnly"),
            ],
        )

    assert response.status_code == 200
    assert response.headers.get_list("set-cookie") == ["wide=1; Path=/", "own=2; HttpOnly"]


async def test_unsafe_requests_from_another_origin_are_refused_and_origin_is_rewritten(
    opened, app_gateway, recorder
):
    _, runtime, cookie = await opened(recorder.url)
    async with app_gateway.client(runtime, cookie) as client:
        foreign = await client.post(
            "/form", content=b"x", headers={"Origin": "http://evil.example"}
        )
        sibling = await client.delete(
            "/thing", headers={"Origin": app_gateway.origin("wg-0123456789ab")}
        )
        own = await client.post(
            "/form", content=b"x", headers={"Origin": app_gateway.origin(runtime)}
        )
        read = await client.get("/page", headers={"Origin": "http://evil.example"})

    assert foreign.status_code == 403 and error_of(foreign) == "origin_not_allowed"
    assert sibling.status_code == 403
    assert own.status_code == 200 and read.status_code == 200
    # Only the two allowed requests reached the app; the app sees its own origin.
    assert [line for line, _ in recorder.heads] == ["POST /form HTTP/1.1", "GET /page HTTP/1.1"]
    assert recorder.heads[0][1]["origin"] == f"http://127.0.0.1:{recorder.port}"


async def raw_status(gateway, runtime: str, cookie: str, path: str) -> int:
    """The status of a GET of `path` exactly as written (no client normalizes it)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: {gateway.host(runtime)}\r\n"
        f"Cookie: {apps.ORIGIN_COOKIE}={cookie}\r\nConnection: close\r\n\r\n".encode()
    )
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return int(answer.split(b" ", 2)[1])


async def test_nothing_under_the_reserved_path_is_ever_proxied(opened, app_gateway, recorder):
    _, runtime, cookie = await opened(recorder.url)
    async with app_gateway.client(runtime, cookie) as client:
        answers = [
            await client.get(path) for path in ("/.workgate/", "/.workgate/anything", "/.workgate")
        ]
        spent = await client.get("/.workgate/enter?ticket=not-a-ticket")
    statuses = [
        await raw_status(app_gateway, runtime, cookie, path)
        for path in (
            "/%2Eworkgate/other",
            "/%2eWORKGATE/other",
            "/x/../.workgate/other",
            "/x/%2E%2E/.workgate/other",
            "//.workgate/other",
            "/./.workgate/other",
        )
    ]

    for answer in answers:
        assert answer.status_code == 404, answer.request.url
        assert error_of(answer) == "not_found"
    assert statuses == [404] * 6
    assert spent.status_code in (401, 403) and spent.headers["cache-control"] == "no-store"
    assert recorder.heads == []


async def test_the_enter_answer_sets_a_host_only_cookie_and_leaks_no_ticket(
    app_settings, app_gateway, api, recorder
):
    def ticket() -> tuple[str, str]:
        runtime = apps.launched_runtime(api, apps.web_workspace(recorder.url))
        return runtime, apps.app_url(api, runtime)

    _, url = await orm(ticket)
    entered = await asyncio.to_thread(app_gateway.enter, url)

    assert entered.status_code == 303
    assert entered.headers["location"] == "/"
    assert entered.headers["cache-control"] == "no-store"
    assert entered.headers["referrer-policy"] == "no-referrer"
    [cookie] = entered.headers.get_list("set-cookie")
    attributes = [part.strip().lower() for part in cookie.split(";")[1:]]
    assert set(attributes) >= {"httponly", "secure", "samesite=lax", "path=/"}
    assert not any(attribute.startswith("domain") for attribute in attributes)
    assert cookie.startswith(f"{apps.ORIGIN_COOKIE}=")
    # The ticket is spent: the same URL opens nothing a second time.
    again = await asyncio.to_thread(app_gateway.enter, url)
    assert again.status_code in (401, 403) and "set-cookie" not in again.headers
    log = app_gateway.log.read_text()
    assert url.split("ticket=", 1)[1] not in log


async def test_each_request_is_one_access_log_line_without_secrets(
    opened, app_gateway, recorder, user
):
    _, runtime, cookie = await opened(recorder.url)
    async with app_gateway.client(runtime, cookie) as client:
        await client.put("/logged/path?secret=query", content=b"12345")
    line = "PUT /logged/path 200 2 5 "
    for _ in range(100):
        lines = [entry for entry in app_gateway.log.read_text().splitlines() if line in entry]
        if lines:
            break
        await asyncio.sleep(0.05)
    [entry] = lines
    assert f"user={user.pk} runtime={runtime}" in entry
    assert cookie not in entry and "secret=query" not in entry


async def test_a_large_upload_streams_to_the_app_with_the_servers_memory_flat(
    opened, app_gateway, recorder
):
    """Twisted spools a body before Daphne starts the app; the proxy takes that file from
    Daphne and reads it in bounded chunks as the upstream takes them, never whole."""
    _, runtime, cookie = await opened(recorder.url)
    size = 200 * MB
    block = b"z" * MB

    async def body():
        for _ in range(size // MB):
            yield block

    pid = daphne_pid(app_gateway.port)
    before = rss_mib(pid)
    async with app_gateway.client(runtime, cookie, timeout=120) as client:
        sized = await client.put("/sized", content=body(), headers={"Content-Length": str(size)})
        chunked = await client.put("/chunked", content=body())
    grew = rss_mib(pid) - before

    assert sized.status_code == chunked.status_code == 200
    [(_, sized_head), (_, chunked_head)] = recorder.heads
    assert sized_head["content-length"] == str(size)
    assert chunked_head["transfer-encoding"] == "chunked"
    assert grew < 50, f"Daphne grew by {grew:.0f} MiB for a {size // MB} MiB upload"


async def test_a_slow_browser_pauses_the_download_instead_of_filling_the_servers_memory(
    app_settings, app_gateway, api, jupyter_app
):
    """The app could send 100 MiB in a fraction of a second; a browser reading ~10 MiB/s gets
    it at its own pace, with Twisted's full buffer pausing the proxy (and so the app)."""

    def open_lab() -> tuple[str, str]:
        runtime = apps.launched_runtime(api, apps.jupyter_workspace(jupyter_app))
        return runtime, apps.app_cookie(api, app_gateway, runtime)

    runtime, cookie = await orm(open_lab)
    path = apps.large_file(jupyter_app, name="slow.bin")
    pid = daphne_pid(app_gateway.port)
    before = peak = rss_mib(pid)
    reader, writer = await asyncio.open_connection("127.0.0.1", app_gateway.port, limit=65536)
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: {app_gateway.host(runtime)}\r\n"
        f"Cookie: {apps.ORIGIN_COOKIE}={cookie}\r\n\r\n".encode()
    )
    received = 0
    while received < 30 * MB:
        received += len(await asyncio.wait_for(reader.read(65536), 10))
        await asyncio.sleep(0.005)
        if received % (2 * MB) < 65536:
            peak = max(peak, rss_mib(pid))
    writer.close()

    assert peak - before < 40, f"Daphne grew by {peak - before:.0f} MiB for a slow reader"


# --- Limits and failures: a gateway of its own, with a 5 s idle timeout and a 1 MiB body limit --


@pytest.fixture(scope="module")
def tight_gateway(django_db_setup, tmp_path_factory):
    with apps.app_gateway(
        tmp_path_factory.mktemp("tight-gateway") / "daphne.log",
        WORKGATE_APP_IDLE_TIMEOUT="5",
        WORKGATE_APP_CONNECT_TIMEOUT="2",
        WORKGATE_APP_MAX_REQUEST_BODY=str(1024 * 1024),
    ) as gateway:
        yield gateway


@pytest.fixture
def tight(settings, tight_gateway, api):
    settings.WORKGATE_APPS_DOMAIN = tight_gateway.domain
    settings.WORKGATE_APP_UPSTREAM_NETWORKS = [ipaddress.ip_network(apps.UPSTREAM_NETWORKS)]

    def open_app(url: str) -> tuple[str, str]:
        runtime = apps.launched_runtime(api, apps.web_workspace(url))
        return runtime, apps.app_cookie(api, tight_gateway, runtime)

    async def opener(url: str):
        return await orm(lambda: open_app(url))

    return opener


async def test_a_body_above_the_limit_is_refused_413_before_it_is_read(
    tight, tight_gateway, recorder
):
    runtime, cookie = await tight(recorder.url)
    too_big = 1024 * 1024 + 1
    reader, writer = await asyncio.open_connection("127.0.0.1", tight_gateway.port)
    # Only the head is sent: the refusal comes without waiting for a body.
    writer.write(
        f"POST /upload HTTP/1.1\r\nHost: {tight_gateway.host(runtime)}\r\n"
        f"Cookie: {apps.ORIGIN_COOKIE}={cookie}\r\nContent-Length: {too_big}\r\n\r\n".encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    body = await asyncio.wait_for(reader.read(), 5)
    writer.close()

    async def chunks():
        for _ in range(17):
            yield b"x" * 65536

    async with tight_gateway.client(runtime, cookie) as client:
        chunked = await client.post("/upload", content=chunks())
        fits = await client.post("/upload", content=b"y" * (1024 * 1024))

    assert head.startswith(b"HTTP/1.1 413 ")
    assert json.loads(body)["code"] == "too_large"
    assert chunked.status_code == 413 and error_of(chunked) == "too_large"
    assert fits.status_code == 200
    assert [line for line, _ in recorder.heads] == ["POST /upload HTTP/1.1"]


async def test_an_app_that_does_not_answer_is_504_and_one_that_is_down_is_502(
    tight, tight_gateway, recorder
):
    recorder.hang = True
    hung, hung_cookie = await tight(recorder.url)
    down, down_cookie = await tight(f"http://127.0.0.1:{free_port()}/")

    started = time.monotonic()
    async with tight_gateway.client(hung, hung_cookie) as client:
        slow = await client.get("/slow")
    took = time.monotonic() - started
    async with tight_gateway.client(down, down_cookie) as client:
        refused = await client.get("/")

    assert slow.status_code == 504 and error_of(slow) == "upstream_timeout"
    assert 4.5 < took < 15
    assert refused.status_code == 502 and error_of(refused) == "upstream_unreachable"


async def test_a_long_answer_ends_when_the_session_stops(opened, app_gateway, mcp_sse_app, api):
    workspace, runtime, cookie = await opened(mcp_sse_app.url)
    async with (
        app_gateway.client(runtime, cookie) as client,
        client.stream("GET", "/sse") as stream,
    ):
        assert stream.status_code == 200
        lines = stream.aiter_lines()
        assert (await asyncio.wait_for(anext(lines), 5)).startswith("event: endpoint")
        response = await orm(lambda: api.post(f"/api/workspaces/{workspace.id}/stop"))
        assert response.status_code == 200
        stopped = time.monotonic()
        with contextlib.suppress(StopAsyncIteration, httpx.HTTPError):
            while True:
                await asyncio.wait_for(anext(lines), 10)
        took = time.monotonic() - stopped
    assert took < 5


# --- Under /apps/<runtime-id>/ on a gateway without an apps domain ----------------------------


@pytest.fixture(scope="module")
def prefix_gateway(django_db_setup, tmp_path_factory):
    with apps.app_gateway(
        tmp_path_factory.mktemp("prefix-gateway") / "daphne.log", WORKGATE_APPS_DOMAIN=""
    ) as gateway:
        yield gateway


async def test_under_a_prefix_the_app_gets_its_own_paths_and_answers_come_back_under_it(
    settings, prefix_gateway, api, httpbin_app
):
    settings.WORKGATE_APPS_DOMAIN = ""
    settings.WORKGATE_APP_UPSTREAM_NETWORKS = [ipaddress.ip_network(apps.UPSTREAM_NETWORKS)]

    def ticket() -> tuple[str, str]:
        workspace = apps.web_workspace(httpbin_app.url, app_path_prefix_allowed=True)
        runtime = apps.launched_runtime(api, workspace)
        return runtime, apps.app_url(api, runtime)

    runtime, url = await orm(ticket)
    prefix = f"/apps/{runtime}"
    path = httpx.URL(url).raw_path.decode()
    assert path.startswith(f"{prefix}/.workgate/enter?ticket=")
    async with httpx.AsyncClient(base_url=prefix_gateway.base_url) as client:
        entered = await client.get(path)
        name = f"__Secure-workgate-app-{runtime}"
        cookie = apps.set_cookie_value(entered, name)
        client.headers["Cookie"] = f"{name}={cookie}; {GATEWAY_COOKIES}"
        headers = (await client.get(f"{prefix}/headers", params={"show_env": "1"})).json()
        relative = await client.get(f"{prefix}/relative-redirect/1")
        absolute = await client.get(f"{prefix}/absolute-redirect/1")
        set_cookie = await client.get(f"{prefix}/cookies/set", params={"flavour": "oat"})

    assert entered.status_code == 303 and entered.headers["location"] == f"{prefix}/"
    assert f"Path={prefix}/" in entered.headers["set-cookie"]
    received = headers["headers"]
    assert received["X-Forwarded-Prefix"] == prefix
    assert "Cookie" not in received  # neither the app cookie nor the gateway's
    assert relative.headers["location"] == f"{prefix}/get"
    assert absolute.headers["location"] == f"http://127.0.0.1:{prefix_gateway.port}{prefix}/get"
    assert set_cookie.headers["location"] == f"{prefix}/cookies"
    [flavour] = set_cookie.headers.get_list("set-cookie")
    assert flavour.startswith("flavour=oat;") and f"Path={prefix}/" in flavour
