"""Attacks from the review of the web-app proxy (issue 21), through the real app proxy (a Daphne
process on the test database) to real or minimal upstreams, as test_attacks.py does: what an
attacker sends, and what the gateway, the app and the network saw."""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
from django.conf import settings
from django.test import override_settings

from tests.support import apps, processes
from tests.support.database import orm

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def refused(response, status: int | tuple[int, ...]) -> dict:
    """A refusal by the gateway in the one error shape (never an answer of the app's)."""
    statuses = (status,) if isinstance(status, int) else status
    assert response.status_code in statuses, (response.status_code, response.content[:300])
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["success"] is False and body["detail"] and body["code"]
    return body


def prefix_opened(api, gateway, url: str, **fields) -> tuple[str, str, str]:
    """(runtime id, cookie name, cookie value) of an app opened under `/apps/<runtime-id>/` on
    `gateway` (`prefix_gateway`), its ticket minted as that gateway's (no apps domain)."""
    workspace = apps.web_workspace(url, app_path_prefix_allowed=True, **fields)
    runtime = apps.launched_runtime(api, workspace)
    with override_settings(WORKGATE_APPS_DOMAIN=""):
        ticket = httpx.URL(apps.app_url(api, runtime)).params["ticket"]
    entered = httpx.get(
        f"{gateway.base_url}/apps/{runtime}/.workgate/enter",
        params={"ticket": ticket},
        follow_redirects=False,
        timeout=30,
    )
    name = f"__Secure-workgate-app-{runtime}"
    cookie = apps.set_cookie_value(entered, name)
    assert entered.status_code == 303 and cookie, entered.text
    return runtime, name, cookie


def raw_request(port: int, target: str, host: str, cookie: str, *, method: str = "GET") -> bytes:
    """`target` sent as written (no client normalises it), the whole answer read."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as conn:
        conn.sendall(
            f"{method} {target} HTTP/1.1\r\nHost: {host}\r\n"
            f"Cookie: {cookie}\r\nConnection: close\r\n\r\n".encode()
        )
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    return answer


# --- 1. SSRF: a request target that is not a path ---------------------------------------------


@contextlib.contextmanager
def canary(host: str):
    """An HTTP server on `host` (outside the allowed 127.0.0.0/8) recording what reaches it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    server = socket.socket(family, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind((host, 0))
    server.listen(8)
    server.settimeout(0.2)
    seen: list[bytes] = []
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                data = b""
                with contextlib.suppress(OSError):
                    while b"\r\n\r\n" not in data:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                seen.append(data)
                body = b"internal-only-secret"
                with contextlib.suppress(OSError):
                    conn.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
                    )

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1], seen
    finally:
        stop.set()
        thread.join(5)
        server.close()


async def test_a_request_target_without_a_leading_slash_cannot_move_the_upstream(
    app_settings, app_gateway, httpbin_app, api
):
    """`GET @[::1]:<port>/x`: glued after the upstream's origin it was userinfo@[::1]:<port>,
    an IP literal aiohttp dials without the pinned resolver, with the credential attached."""
    runtime, cookie = await orm(
        lambda: apps.open_app(
            api,
            app_gateway,
            httpbin_app.url,
            app_credential_header="X-Api-Key",
            app_credential="workspace-credential-0042",
        )
    )
    with canary("::1") as (port, seen):
        answer = await asyncio.to_thread(
            raw_request,
            app_gateway.port,
            f"@[::1]:{port}/latest/meta-data/",
            app_gateway.host(runtime),
            f"{apps.ORIGIN_COOKIE}={cookie}",
        )

    assert seen == [], seen[0][:600]
    assert answer.startswith(b"HTTP/1.1 400"), answer[:300]
    assert b"internal-only-secret" not in answer


async def test_an_encoded_slash_after_the_prefix_cannot_move_the_upstream(
    app_settings, prefix_gateway, httpbin_app, api
):
    """Prefix mode, a target a browser sends as written (a link): decoded it is
    `/apps/<rid>/@[::1]:<port>/x`, raw after the prefix `%2F@[::1]:<port>/x`."""
    runtime, name, cookie = await orm(lambda: prefix_opened(api, prefix_gateway, httpbin_app.url))
    with canary("::1") as (port, seen):
        answer = await asyncio.to_thread(
            raw_request,
            prefix_gateway.port,
            f"/apps/{runtime}%2F@[::1]:{port}/x",
            f"127.0.0.1:{prefix_gateway.port}",
            f"{name}={cookie}",
        )

    assert seen == [], seen[0][:600]
    assert answer.startswith(b"HTTP/1.1 400"), answer[:300]
    assert b"internal-only-secret" not in answer


# --- 3. The workspace url's path is a boundary --------------------------------------------------


@contextlib.contextmanager
def static_site(folder):
    """python -m http.server (which resolves dot segments) over `folder`: /wiki/ is what the
    workspace publishes, /secret.txt is beside it."""
    (folder / "wiki").mkdir(parents=True, exist_ok=True)
    (folder / "wiki" / "index.html").write_text("the published wiki")
    (folder / "secret.txt").write_text("not-published-secret")
    port = processes.free_port()
    argv = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)]
    with processes.running(
        argv, port=port, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    ):
        yield port


DOT_SEGMENTS = (
    "/../secret.txt",
    "/%2e%2e/secret.txt",
    "/..%2fsecret.txt",
    "/a/..%5c..%5csecret.txt",
)


async def test_dot_segments_do_not_leave_the_workspaces_base_path(
    app_settings, app_gateway, api, tmp_path
):
    with static_site(tmp_path / "site") as port:
        runtime, cookie = await orm(
            lambda: apps.open_app(api, app_gateway, f"http://127.0.0.1:{port}/wiki/")
        )
        host, cookie = app_gateway.host(runtime), f"{apps.ORIGIN_COOKIE}={cookie}"
        published = await asyncio.to_thread(
            raw_request, app_gateway.port, "/a/../index.html", host, cookie
        )
        answers = [
            await asyncio.to_thread(raw_request, app_gateway.port, target, host, cookie)
            for target in DOT_SEGMENTS
        ]

    assert b"the published wiki" in published  # dot segments that stay inside are the app's
    for target, answer in zip(DOT_SEGMENTS, answers, strict=True):
        assert b"not-published-secret" not in answer, target
        assert answer.startswith(b"HTTP/1.1 400"), (target, answer[:300])


# --- 2. An app under a prefix does not take over the gateway's origin ---------------------------


async def prefix_get(gateway, runtime, name, cookie, path, params=None, headers=None):
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=30) as client:
        return await client.get(
            f"/apps/{runtime}{path}",
            params=params,
            headers={"Cookie": f"{name}={cookie}", **(headers or {})},
        )


def effective_path(set_cookie: str) -> str | None:
    """The Path a browser applies: the last Path attribute (RFC 6265 5.2.4, 5.3 step 7)."""
    path = None
    for attribute in set_cookie.split(";")[1:]:
        key, _, value = attribute.strip().partition("=")
        if key.strip().lower() == "path":
            path = value.strip()
    return path


async def test_an_app_under_a_prefix_cannot_set_a_cookie_for_the_whole_gateway_origin(
    app_settings, prefix_gateway, httpbin_app, api
):
    """Two Path attributes: the proxy rewrote the first, browsers obey the last."""
    runtime, name, cookie = await orm(lambda: prefix_opened(api, prefix_gateway, httpbin_app.url))
    planted = "theme=attackers; Path=/; Path=/; HttpOnly; SameSite=Lax"

    response = await prefix_get(
        prefix_gateway, runtime, name, cookie, "/response-headers", {"Set-Cookie": planted}
    )

    assert response.status_code == 200
    (set_cookie,) = response.headers.get_list("set-cookie")
    assert effective_path(set_cookie) == f"/apps/{runtime}/", set_cookie
    assert set_cookie.lower().count("path=") == 1, set_cookie


@pytest.mark.parametrize("mode", ["origin", "prefix"])
async def test_an_app_cannot_set_the_gateways_cookies(
    app_settings, app_gateway, prefix_gateway, httpbin_app, api, mode
):
    names = [
        settings.SESSION_COOKIE_NAME,
        settings.CSRF_COOKIE_NAME,
        "__Host-workgate-app",
        "__Secure-workgate-app-wg-0123456789ab",
    ]
    params = [("Set-Cookie", f"{n}=attackers; Path=/; Secure") for n in names]
    params.append(("Set-Cookie", "theme=dark; Path=/"))
    if mode == "origin":
        runtime, cookie = await orm(lambda: apps.open_app(api, app_gateway, httpbin_app.url))
        async with app_gateway.client(runtime, cookie) as client:
            response = await client.get("/response-headers", params=params)
    else:
        runtime, name, cookie = await orm(
            lambda: prefix_opened(api, prefix_gateway, httpbin_app.url)
        )
        response = await prefix_get(
            prefix_gateway, runtime, name, cookie, "/response-headers", params
        )

    assert response.status_code == 200
    (kept,) = response.headers.get_list("set-cookie")
    assert kept.startswith("theme=dark;"), kept


async def test_an_app_under_a_prefix_cannot_have_a_service_worker(
    app_settings, prefix_gateway, httpbin_app, api
):
    """A worker allowed the whole origin (Service-Worker-Allowed: /) answers the gateway's own
    pages, the sign-in included, after the app session has ended; under the prefix no worker
    script is served at all, and the header never reaches the browser."""
    runtime, name, cookie = await orm(lambda: prefix_opened(api, prefix_gateway, httpbin_app.url))
    params = {"Service-Worker-Allowed": "/", "Content-Type": "text/javascript"}

    widened = await prefix_get(prefix_gateway, runtime, name, cookie, "/response-headers", params)
    script = await prefix_get(
        prefix_gateway,
        runtime,
        name,
        cookie,
        "/response-headers",
        params,
        headers={"Service-Worker": "script"},
    )

    assert widened.status_code == 200
    assert "service-worker-allowed" not in widened.headers
    assert refused(script, 403)["code"] == "service_worker_refused"


# --- 4. No anonymous disk fill: the app's body limit only with a signed app cookie ---------------

MiB = 1024 * 1024


def spooled_bytes(pid: int) -> int:
    """The largest temporary file (deleted or under /tmp) the Daphne process holds open."""
    largest = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        path = f"/proc/{pid}/fd/{fd}"
        with contextlib.suppress(OSError):
            target = os.readlink(path)
            if "(deleted)" in target or target.startswith("/tmp"):  # noqa: S108 (reading)
                largest = max(largest, os.stat(path).st_size)
    return largest


def upload_without_finishing(
    port: int, target: str, host: str, cookie: str = "", *, length: int = (1 << 30) - 1
) -> tuple[bytes, int]:
    """Declare `length`, send up to 64 MiB: (what the server said, the most it spooled)."""
    conn = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        cookie = f"Cookie: {cookie}\r\n" if cookie else ""
        conn.sendall(
            f"POST {target} HTTP/1.1\r\nHost: {host}\r\n{cookie}"
            f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n".encode()
        )
        answer = b""
        for _ in range(64):
            try:
                conn.sendall(b"x" * MiB)
            except (BrokenPipeError, ConnectionResetError):
                break
            if select.select([conn], [], [], 0)[0]:
                answer += conn.recv(65536)
                break
        time.sleep(1.0)
        spooled = spooled_bytes(processes.daphne_pid(port))
        conn.settimeout(1)
        with contextlib.suppress(TimeoutError, OSError):
            answer += conn.recv(65536)
        return answer, spooled
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("target", "host", "cookie"),
    [
        ("/api/auth/signin", "127.0.0.1", ""),  # the gateway's own route
        ("/upload", "wg-000000000000.{domain}", ""),  # an app origin, no cookie
        # a cookie of the right name the gateway did not sign
        ("/upload", "wg-000000000000.{domain}", f"{apps.ORIGIN_COOKIE}=forged.value.sig"),
        ("/apps/wg-000000000000/upload", "127.0.0.1", "__Secure-workgate-app-x=forged"),
    ],
)
async def test_an_anonymous_client_cannot_make_the_gateway_spool_a_large_body(
    app_settings, app_gateway, target, host, cookie
):
    host = host.format(domain=app_gateway.domain)
    answer, spooled = await asyncio.to_thread(
        upload_without_finishing, app_gateway.port, target, host, cookie
    )

    assert spooled < 8 * MiB, f"{spooled / MiB:.0f} MiB spooled to disk for {target} on {host}"
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b'"too_large"' in answer


async def test_a_signed_in_app_under_a_prefix_still_takes_a_large_upload(
    app_settings, prefix_gateway, httpbin_app, api
):
    runtime, name, cookie = await orm(lambda: prefix_opened(api, prefix_gateway, httpbin_app.url))
    body = b"0123456789abcdef" * (MiB // 16) * 12  # above the gateway's own 10 MiB
    async with httpx.AsyncClient(base_url=prefix_gateway.base_url, timeout=60) as client:
        response = await client.post(
            f"/apps/{runtime}/anything", content=body, headers={"Cookie": f"{name}={cookie}"}
        )

    assert response.status_code == 200, response.text[:300]
    assert len(response.json()["data"]) == len(body)


@pytest.fixture(scope="module")
def slow_body_gateway(django_db_setup, tmp_path_factory):
    """A gateway whose bodies must grow by 16 KiB/s over every 2-second window."""
    log = tmp_path_factory.mktemp("slow-body-gateway") / "daphne.log"
    with apps.app_gateway(log, WORKGATE_APP_BODY_TIMEOUT="2") as gateway:
        yield gateway


def trickle(port: int, host: str, seconds: float) -> tuple[bytes, float]:
    """A body declared 1000 bytes long, sent a byte a second: (what came back, when)."""
    began = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(
            f"POST /api/auth/signin HTTP/1.1\r\nHost: {host}\r\n"
            "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n".encode()
        )
        answer = b""
        while time.monotonic() - began < seconds:
            try:
                conn.sendall(b"x")
            except OSError:
                break
            if select.select([conn], [], [], 1.0)[0]:
                chunk = conn.recv(65536)
                answer += chunk
                if not chunk:
                    break
        return answer, time.monotonic() - began


async def test_a_body_sent_a_byte_at_a_time_does_not_hold_the_connection(
    slow_body_gateway,
):
    answer, took = await asyncio.to_thread(trickle, slow_body_gateway.port, "127.0.0.1", 15)

    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b'"body_too_slow"' in answer
    assert took < 6, took


# --- 5. One user's long answers do not starve the others ---------------------------------------


@contextlib.contextmanager
def streaming_app():
    """/stream: an endless slow event stream; anything else: "ok" at once."""
    port = processes.free_port()
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop = asyncio.Event()

    async def handle(reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if head.split(b" ", 2)[1].startswith(b"/stream"):
                    writer.write(
                        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                        b"Transfer-Encoding: chunked\r\n\r\n"
                    )
                    while True:
                        writer.write(b"6\r\ndata:\n\r\n")
                        await writer.drain()
                        await asyncio.sleep(0.5)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=512)
        started.set()
        await stop.wait()
        server.close()
        for task in asyncio.all_tasks() - {asyncio.current_task()}:
            task.cancel()

    thread = threading.Thread(target=lambda: loop.run_until_complete(main()), daemon=True)
    thread.start()
    started.wait(10)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(5)


async def test_one_users_long_answers_do_not_starve_another_users_requests(
    app_settings, app_gateway, api, client_for, other_user
):
    """The pool to one upstream (100 connections) is shared by all its users: one user holding
    100 event streams left every other user's request waiting, with no time limit."""
    with streaming_app() as url:
        runtime_a, cookie_a = await orm(lambda: apps.open_app(api, app_gateway, url))
        runtime_b, cookie_b = await orm(
            lambda: apps.open_app(client_for(other_user), app_gateway, url)
        )
        limits = httpx.Limits(max_connections=110)
        async with (
            app_gateway.client(runtime_a, cookie_a, limits=limits) as attacker,
            app_gateway.client(runtime_b, cookie_b) as victim,
        ):
            statuses = []
            async with contextlib.AsyncExitStack() as stack:
                for _ in range(100):
                    response = await stack.enter_async_context(attacker.stream("GET", "/stream"))
                    statuses.append(response.status_code)
                    if response.status_code != 200:
                        await response.aread()
                        busy = response.json()
                try:
                    answer = await asyncio.wait_for(victim.get("/ok"), 10)
                except TimeoutError:
                    answer = None

    assert answer is not None, "another user's request waited >10 s for the shared pool"
    assert answer.status_code == 200 and answer.text == "ok"
    assert statuses.count(200) == 32 and statuses.count(503) == 68, statuses
    assert busy["code"] == "app_busy" and busy["success"] is False


async def test_the_wait_for_a_pooled_connection_is_bounded(settings, monkeypatch):
    """When the pool is full, a request waits for a connection no longer than the connect
    timeout (504 in the proxy), whoever holds the pool."""
    import aiohttp

    from app_proxy import upstreams
    from app_proxy.admission import AppUpstream

    settings.WORKGATE_APP_CONNECT_TIMEOUT = 1
    monkeypatch.setattr(upstreams, "POOL_PER_UPSTREAM", 2)
    with streaming_app() as url:
        upstream = AppUpstream(
            origin=url.rstrip("/"),
            base_path="",
            address="127.0.0.1",
            port=int(url.rsplit(":", 1)[1].strip("/")),
            tls_verify=True,
            credential_header="",
            credential="",
        )
        stream, ok = upstreams.url_for(upstream, "/stream"), upstreams.url_for(upstream, "/ok")
        try:
            async with (
                upstreams.request(upstream, 1, "GET", stream) as first,
                upstreams.request(upstream, 2, "GET", stream) as second,
            ):
                assert first.status == second.status == 200
                began = time.monotonic()
                with pytest.raises(aiohttp.ServerTimeoutError):
                    async with upstreams.request(upstream, 3, "GET", ok):
                        pass
                waited = time.monotonic() - began
            async with upstreams.request(upstream, 3, "GET", ok) as after:
                assert await after.read() == b"ok"
        finally:
            await upstreams.close_all()

    assert waited < 3, waited
    assert upstreams._in_flight == {} and upstreams._per_account == {}


# --- 6. Another app's page does not send requests with this app's cookie ------------------------


@pytest.mark.parametrize(
    ("fetch", "admitted"),
    [
        ({"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "no-cors"}, False),  # <img>, <script>
        ({"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "cors"}, False),  # fetch(credentials)
        ({"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"}, False),
        ({"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "navigate"}, True),  # a link
        ({"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors"}, True),  # the app itself
        ({"Sec-Fetch-Site": "none", "Sec-Fetch-Mode": "navigate"}, True),  # typed in
        ({}, True),  # not a browser that says
    ],
)
async def test_a_subrequest_from_a_sibling_app_origin_is_not_admitted(
    app_settings, app_gateway, httpbin_app, api, fetch, admitted
):
    """Every app origin is `<runtime-id>.<apps domain>`: one site for browsers, so the app
    cookie's SameSite=Lax does not keep it out of what another app's page requests."""
    runtime, cookie = await orm(lambda: apps.open_app(api, app_gateway, httpbin_app.url))
    headers = {**fetch, "Referer": f"http://wg-0123456789ab.{app_gateway.domain}/"}
    async with app_gateway.client(runtime, cookie, headers=headers) as client:
        response = await client.get("/anything/delete-everything")

    if admitted:
        assert response.status_code == 200, response.text[:300]
    else:
        assert refused(response, 403)["code"] == "cross_site_refused"
        assert "X-Workgate-Assertion" not in response.text


# --- 7. Prefix mode checks the Host as Django would ---------------------------------------------


async def test_a_host_outside_allowed_hosts_is_not_passed_to_an_app_under_a_prefix(
    app_settings, prefix_gateway, httpbin_app, api
):
    """Prefix mode is routed before Django, so ALLOWED_HOSTS never saw it: any Host reached the
    app as X-Forwarded-Host, and its absolute redirects were rewritten onto it."""
    runtime, name, cookie = await orm(lambda: prefix_opened(api, prefix_gateway, httpbin_app.url))
    async with httpx.AsyncClient(base_url=prefix_gateway.base_url, timeout=30) as client:
        poisoned = await client.get(
            f"/apps/{runtime}/absolute-redirect/1",
            headers={"Host": "evil.example", "Cookie": f"{name}={cookie}"},
        )
        allowed = await client.get(
            f"/apps/{runtime}/absolute-redirect/1", headers={"Cookie": f"{name}={cookie}"}
        )

    assert refused(poisoned, 400)["code"] == "bad_request"
    assert "evil.example" not in poisoned.text
    assert allowed.status_code == 302
    assert allowed.headers["location"].startswith(f"http://127.0.0.1:{prefix_gateway.port}/apps/")


def test_the_upstream_side_refuses_a_url_naming_another_host_or_port():
    """Defence in depth: whatever builds the URL, nothing is dialled but the pinned host and
    port (an IP literal would skip the pinned resolver)."""
    from yarl import URL

    from app_proxy import upstreams
    from app_proxy.admission import AppUpstream

    upstream = AppUpstream(
        origin="http://app.intranet.test:8080",
        base_path="",
        address="10.20.0.5",
        port=8080,
        tls_verify=True,
        credential_header="",
        credential="",
    )

    assert str(upstreams.url_for(upstream, "/a/@[::1]:9/x", "q=1")) == (
        "http://app.intranet.test:8080/a/@[::1]:9/x?q=1"
    )
    assert str(upstreams.url_for(upstream, "/ws", websocket=True)).startswith("ws://app.")
    for target in ("@[::1]:9/x", "[::1]:9/x", ""):
        with pytest.raises(upstreams.NotPinned):
            upstreams.url_for(upstream, target)
    for url in (
        "http://app.intranet.test:8080@[::1]:9/x",
        "http://[::1]:8080/x",
        "http://app.intranet.test:8081/x",
        "http://user@app.intranet.test:8080/x",
    ):
        with pytest.raises(upstreams.NotPinned):
            upstreams.check_pinned(upstream, URL(url, encoded=True))


# --- The tunnel on every request, not only at the ticket and the door ----------------------------

OUTSIDE_IP = "203.0.113.9"


def tunnel_admission(*, requires_tunnel: bool):
    from app_proxy.admission import Admission, AppUpstream

    return Admission(
        grant_id="g" * 43,
        session_id=__import__("uuid").uuid4(),
        runtime_id="wg-0123456789ab",
        workspace_id="ws",
        user_id=1,
        mode="origin",
        upstream=AppUpstream(
            f"http://127.0.0.1:{processes.free_port()}", "", "127.0.0.1", 1, False, "", ""
        ),
        assertion="assertion",
        requires_tunnel=requires_tunnel,
    )


def in_process_scope(kind: str, client_ip: str) -> dict:
    return {
        "type": kind,
        "method": "GET",
        "scheme": "http" if kind == "http" else "ws",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "headers": [(b"host", b"wg-0123456789ab.apps.localhost"), (b"cookie", b"c=1")],
        "client": (client_ip, 50000),
        "subprotocols": [],
    }


async def proxied_http(client_ip: str, admitted) -> tuple[int, dict]:
    from app_proxy import proxy

    sent = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.disconnect"}

    scope = in_process_scope("http", client_ip)
    await proxy._proxy_http(scope, receive, send, "origin", "wg-0123456789ab", "/", None)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], (__import__("json").loads(body) if body else {})


@pytest.mark.parametrize("kind", ["http", "websocket"])
async def test_an_app_cookie_of_a_tunnelled_workspace_opens_nothing_from_outside_the_tunnel(
    kind, monkeypatch
):
    """The cookie was issued through the tunnel; shown from any other address, every request is
    403 tunnel_required (a WebSocket is closed before it is accepted), with no database call."""
    from app_proxy import admission, proxy

    admitted = tunnel_admission(requires_tunnel=True)

    async def admit(**_):
        return admitted

    monkeypatch.setattr(admission, "admit", admit)
    if kind == "http":
        status, body = await proxied_http(OUTSIDE_IP, admitted)
        assert (status, body["code"]) == (403, "tunnel_required")
        # Through the tunnel the request goes on to the app (here: down, 502), not refused.
        status, body = await proxied_http("100.64.0.7", admitted)
        assert status != 403 and body.get("code") != "tunnel_required"
        return
    sent = []

    async def send(message):
        sent.append(message)

    messages = [{"type": "websocket.connect"}]

    async def receive():
        return messages.pop(0) if messages else {"type": "websocket.disconnect", "code": 1000}

    scope = in_process_scope("websocket", OUTSIDE_IP)
    await proxy._proxy_websocket(scope, receive, send, "origin", "wg-0123456789ab", "/")
    assert [m["type"] for m in sent] == ["websocket.close"]
