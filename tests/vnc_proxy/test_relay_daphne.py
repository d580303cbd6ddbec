"""The relay served by real Daphne processes (with Redis as the channel layer), reached by a real
WebSocket client, in front of real desktops: Xvfb + x11vnc, and websockify with HTTP Basic auth
as a KasmVNC-style upstream."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import threading
import time
from urllib.parse import urlsplit

import httpx
import pytest
from django.conf import settings
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from audit.models import AuditEntry
from sessions_app.models import WorkspaceSession
from tests.support import processes
from tests.support.desktops import GEOMETRY, needs_desktops
from tests.support.nginx import self_signed
from tests.support.processes import ROOT, daphne_pid, free_port, rss_mib, running
from tests.support.rfb import RfbClient
from tests.vnc_proxy.conftest import db

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True), needs_desktops]

MB = 1024 * 1024


@pytest.fixture(scope="module")
def daphnes(django_db_setup, tmp_path_factory):
    """Two Daphne processes on the test database and this suite's Redis; their ports and logs."""
    logs = tmp_path_factory.mktemp("daphne")
    environment = {
        "REDIS_URL": settings.REDIS_URL,
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",  # the access log goes to stdout
    }
    with contextlib.ExitStack() as stack:
        servers = []
        for index in range(2):
            log = logs / f"daphne-{index}.log"
            servers.append((stack.enter_context(processes.daphne(log, **environment)), log))
        yield servers


def ws_url(body: dict, port: int) -> str:
    """The ticket's vncUrl, pointed at one Daphne process."""
    parts = urlsplit(body["vncUrl"])
    return f"ws://127.0.0.1:{port}{parts.path}?{parts.query}"


def viewer(url: str, **kwargs):
    kwargs.setdefault("open_timeout", 20)
    return connect(url, subprotocols=["binary"], ping_interval=None, max_size=None, **kwargs)


async def last_audit(action: str, session) -> AuditEntry:
    """The newest `action` entry about `session`, once the relay (in another process, where an
    earlier test's connection may still be winding down) has written it."""
    entries = AuditEntry.objects.filter(action=action, resource=f"session:{session.id}")
    for _ in range(200):
        entry = await db(lambda: entries.order_by("id").last())()
        if entry is not None:
            return entry
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {action} entry")


async def closed_with(url: str) -> tuple[int, str]:
    async with viewer(url) as ws:
        with pytest.raises(ConnectionClosed):
            while True:
                await asyncio.wait_for(ws.recv(), 20)
        return ws.close_code, ws.close_reason


async def test_a_viewer_reaches_the_desktop_through_daphne(daphnes, desktop, ticket_for, user):
    (port, _log), _ = daphnes
    body = await db(ticket_for)(user, desktop.runtime_id)

    async with viewer(ws_url(body, port)) as ws:
        rfb = RfbClient(ws)
        init = await rfb.handshake(body["vncPassword"])
        rectangles = await rfb.framebuffer_update(init.width, init.height)
        subprotocol = ws.subprotocol
    replay = await closed_with(ws_url(body, port))

    assert subprotocol == "binary"
    assert (init.width, init.height) == GEOMETRY
    assert rectangles >= 1
    assert replay == (4401, "ticket already used")
    closed = await last_audit("vnc_disconnect", desktop)
    assert closed.details["bytes_to_browser"] > 0 and closed.details["bytes_to_desktop"] > 0


async def test_of_twenty_uses_across_two_processes_exactly_one_gets_through(
    daphnes, desktop, ticket_for, user
):
    body = await db(ticket_for)(user, desktop.runtime_id)
    urls = [ws_url(body, daphnes[i % 2][0]) for i in range(20)]

    async def attempt(url):
        async with viewer(url) as ws:
            try:
                return await asyncio.wait_for(ws.recv(), 20)
            except ConnectionClosed:
                return (ws.close_code, ws.close_reason)

    outcomes = await asyncio.gather(*(attempt(url) for url in urls))

    greetings = [o for o in outcomes if isinstance(o, bytes)]
    assert len(greetings) == 1 and greetings[0].startswith(b"RFB 003.00")
    assert (
        sorted(o for o in outcomes if not isinstance(o, bytes))
        == [(4401, "ticket already used")] * 19
    )


async def test_stopping_in_one_process_closes_the_relay_in_another(
    daphnes, desktop, ticket_for, user, client_for
):
    (port, _log), _ = daphnes
    body = await db(ticket_for)(user, desktop.runtime_id)

    async with viewer(ws_url(body, port)) as ws:
        await RfbClient(ws).handshake(body["vncPassword"])
        stopped = await db(client_for(user).post)(f"/api/workspaces/{desktop.workspace_id}/stop")
        with pytest.raises(ConnectionClosed):
            while True:
                await asyncio.wait_for(ws.recv(), 10)

    assert stopped.status_code == 200
    assert (ws.close_code, ws.close_reason) == (4410, "the session ended")


# --- Backpressure --------------------------------------------------------------------------------


class ScriptedDesktop:
    """A loopback 'desktop' that greets like RFB, then pushes bytes as fast as it is allowed to
    (push=True; counting what the kernel took from it), never reads (push=False), or echoes
    everything back (push="echo")."""

    def __init__(self, *, push):
        self.push = push
        self.counts: list[int] = []
        self.stalled = threading.Event()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self._stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        self.server.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn):
        with conn:
            try:
                conn.sendall(b"RFB 003.008\n")
                if self.push == "echo":
                    while data := conn.recv(1 << 20):
                        conn.sendall(data)
                    return
                if not self.push:
                    self._stop.wait()
                    return
                conn.settimeout(3)
                chunk = b"\0" * (256 * 1024)
                index = len(self.counts)
                self.counts.append(0)
                while not self._stop.is_set() and self.counts[index] < 1024 * MB:
                    self.counts[index] += conn.send(chunk)
            except TimeoutError:
                self.stalled.set()
            except OSError:
                return  # the readiness probe hangs up after the greeting

    @property
    def sent(self) -> int:
        return max(self.counts, default=0)

    def close(self):
        self._stop.set()
        self.server.close()


@pytest.fixture
def scripted_desktop(make_workspace, launch, user, request):
    desktop_server = ScriptedDesktop(push=request.param)
    workspace = make_workspace(
        provisioner="static", vnc_target=f"tcp://127.0.0.1:{desktop_server.port}"
    )
    session = launch(user, workspace)
    yield desktop_server, session
    desktop_server.close()
    # A relay stuck writing to a desktop that reads nothing ends only once the desktop goes;
    # let it write its disconnect before the test's tables are flushed.
    audited = AuditEntry.objects.filter(resource=f"session:{session.id}")
    if audited.filter(action="vnc_connect").exists():
        for _ in range(400):
            if audited.filter(action="vnc_disconnect").exists():
                break
            time.sleep(0.05)


@pytest.mark.parametrize("scripted_desktop", [True], indirect=True)
async def test_a_browser_that_reads_nothing_does_not_make_the_relay_buffer(
    daphnes, scripted_desktop, ticket_for, user
):
    (port, _log), _ = daphnes
    desktop_server, session = scripted_desktop
    body = await db(ticket_for)(user, session.runtime_id)
    rss_before = rss_mib(daphne_pid(port))

    # max_queue=1: the client library stops reading its socket once one message is waiting.
    async with viewer(ws_url(body, port), max_queue=1) as ws:
        await asyncio.get_running_loop().run_in_executor(None, desktop_server.stalled.wait, 60)
        rss_during = rss_mib(daphne_pid(port))
        ws.transport.abort()

    assert desktop_server.stalled.is_set()
    # Kernel socket buffers on both sides account for tens of MB at most; without flow control
    # the relay would have taken the full 1 GB into its own memory.
    assert desktop_server.sent < 160 * MB
    assert rss_during - rss_before < 64
    # The aborted viewer's connection is wound down and audited (and no longer writing when
    # the test's tables are flushed).
    assert (await last_audit("vnc_disconnect", session)).details["bytes_to_browser"] > 0


@pytest.mark.parametrize("scripted_desktop", [False], indirect=True)
async def test_a_desktop_that_reads_nothing_does_not_make_the_relay_buffer(
    daphnes, scripted_desktop, ticket_for, user
):
    (port, _log), _ = daphnes
    _desktop_server, session = scripted_desktop
    body = await db(ticket_for)(user, session.runtime_id)
    rss_before = rss_mib(daphne_pid(port))
    chunk = b"\1" * MB
    sent = 0

    async with viewer(ws_url(body, port)) as ws:
        assert (await ws.recv()).startswith(b"RFB")
        with contextlib.suppress(TimeoutError):
            while sent < 1024 * MB:
                await asyncio.wait_for(ws.send(chunk), 3)
                sent += len(chunk)
        rss_during = rss_mib(daphne_pid(port))
        ws.transport.abort()  # a stuck viewer does not wait for a close handshake

    assert sent < 160 * MB
    assert rss_during - rss_before < 64


@pytest.mark.parametrize("scripted_desktop", [False], indirect=True)
async def test_a_browser_that_leaves_while_its_desktop_reads_nothing_is_let_go(
    daphnes, scripted_desktop, ticket_for, user
):
    """Reading from the browser is paused while the desktop is stuck, so Twisted would never
    see the browser leave; the relay looks for it and winds the connection down."""
    (port, _log), _ = daphnes
    _desktop_server, session = scripted_desktop
    body = await db(ticket_for)(user, session.runtime_id)

    async with viewer(ws_url(body, port)) as ws:
        assert (await ws.recv()).startswith(b"RFB")
        with contextlib.suppress(TimeoutError):
            while True:  # until the relay stops reading from this browser
                await asyncio.wait_for(ws.send(b"\1" * MB), 3)
        ws.transport.abort()

    # Written within seconds, while the stuck desktop is still connected (before the fix the
    # relay waited for the desktop to go, at the end of the test).
    disconnect = await last_audit("vnc_disconnect", session)
    assert disconnect.details["closed_by"] == "browser"
    assert disconnect.details["bytes_to_desktop"] > 0


@pytest.mark.parametrize("scripted_desktop", ["echo"], indirect=True)
async def test_every_byte_arrives_in_order_however_the_browser_frames_it(
    daphnes, scripted_desktop, ticket_for, user
):
    import random

    (port, _log), _ = daphnes
    _desktop_server, session = scripted_desktop
    body = await db(ticket_for)(user, session.runtime_id)
    rng = random.Random(4)
    sent = bytearray()
    received = bytearray()

    async with viewer(ws_url(body, port)) as ws:
        assert await ws.recv() == b"RFB 003.008\n"

        async def collect():
            while len(received) < expected:
                received.extend(await ws.recv())

        for size in (1, 0, 125, 126, 127, 65535, 65536, 65537, 900_001, 17):
            payload = rng.randbytes(size)
            await ws.send(payload)  # 7-, 16- and 64-bit lengths; one spans reads
            sent.extend(payload)
        parts = [rng.randbytes(n) for n in (10, 70000, 3)]
        await ws.send(parts)  # one message in three fragments (continuation frames)
        sent.extend(b"".join(parts))
        await ws.ping()  # a control frame between data frames
        burst = [rng.randbytes(rng.randrange(1, 300)) for _ in range(300)]
        for payload in burst:  # many small frames per read
            await ws.send(payload)
            sent.extend(payload)
        expected = len(sent)
        await asyncio.wait_for(collect(), 30)

    assert bytes(received) == bytes(sent)


@pytest.mark.parametrize("scripted_desktop", ["echo"], indirect=True)
async def test_a_message_over_daphnes_size_limit_ends_the_connection(
    daphnes, scripted_desktop, ticket_for, user
):
    (port, _log), _ = daphnes
    _desktop_server, session = scripted_desktop
    body = await db(ticket_for)(user, session.runtime_id)

    async with viewer(ws_url(body, port)) as ws:
        await ws.recv()
        with pytest.raises(ConnectionClosed):
            # Daphne's default --websocket_max_message_size is 1 MiB. The server may drop the
            # connection while the message is still being sent, or right after.
            await ws.send(b"x" * (MB + 1))
            while True:
                await asyncio.wait_for(ws.recv(), 10)

    closed = await last_audit("vnc_disconnect", session)
    assert closed.details["bytes_to_desktop"] == 0


# --- Logs --------------------------------------------------------------------------------------


async def test_tickets_appear_in_no_log_line(daphnes, desktop, ticket_for, user):
    (port, log), _ = daphnes
    used = await db(ticket_for)(user, desktop.runtime_id)
    fetched = await db(ticket_for)(user, desktop.runtime_id)
    ticket = urlsplit(used["vncUrl"]).query.split("=", 1)[1]
    other = urlsplit(fetched["vncUrl"]).query.split("=", 1)[1]

    async with viewer(ws_url(used, port)) as ws:
        await ws.recv()
    # The same URL fetched without the upgrade: Daphne logs HTTP requests with their query.
    plain = await db(httpx.get)(ws_url(fetched, port).replace("ws://", "http://"), timeout=10)
    deadline = time.monotonic() + 10
    while "ticket=[redacted]" not in (text := log.read_text(errors="replace")):
        assert time.monotonic() < deadline, "no access log line for the plain request"
        await asyncio.sleep(0.1)
    assert plain.status_code in (401, 403)
    assert "WSCONNECTING /api/agents/workspace/vnc/" in text  # the access log is on
    assert "ticket=[redacted]" in text
    assert ticket not in text and other not in text


# --- A KasmVNC-style upstream: websockify with HTTP Basic auth in front of x11vnc ---------------


@pytest.fixture
def websockify_desktop(desktop, tmp_path):
    """websockify over TLS (a self-signed certificate, as a lab KasmVNC's) requiring viewer:s3cret
    in front of `desktop`'s x11vnc; its port. Basic credentials go over TLS only."""
    cert, key = self_signed(tmp_path)
    port = free_port()
    argv = [
        ROOT / ".venv" / "bin" / "websockify",
        "--ssl-only",
        f"--cert={cert}",
        f"--key={key}",
        "--auth-plugin",
        "BasicHTTPAuth",
        "--auth-source",
        "viewer:s3cret",
        f"127.0.0.1:{port}",
        desktop.upstream_target,
    ]
    with running(argv, port=port, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
        yield port


@pytest.mark.parametrize(
    ("secret", "outcome"), [("s3cret", "through"), ("wrong", "refused")], ids=["right", "wrong"]
)
async def test_a_websocket_upstream_gets_basic_auth_from_the_relay(
    daphnes, desktop, websockify_desktop, make_workspace, launch, ticket_for, user, secret, outcome
):
    (port, _log), _ = daphnes
    kasm = await db(make_workspace)(
        provisioner="static",
        vnc_target=f"wss://127.0.0.1:{websockify_desktop}/websockify",
        vnc_tls_verify=False,
        vnc_username="viewer",
        vnc_secret=secret,
        rfb_password=desktop.rfb_password,
    )
    session = await db(launch)(user, kasm)
    body = await db(ticket_for)(user, session.runtime_id)

    if outcome == "through":
        async with viewer(ws_url(body, port)) as ws:
            init = await RfbClient(ws).handshake(body["vncPassword"])
        assert (init.width, init.height) == GEOMETRY
        assert await db(lambda: WorkspaceSession.objects.get(pk=session.pk).upstream_kind)() == (
            "websocket"
        )
    else:
        code, reason = await closed_with(ws_url(body, port))
        assert (code, reason) == (1011, "The desktop could not be reached")  # not its 401


@pytest.fixture
def tls_websockify_desktop(desktop, tmp_path):
    """websockify over TLS with a self-signed certificate (a lab KasmVNC) in front of `desktop`'s
    x11vnc; its port."""
    cert, key = self_signed(tmp_path)
    port = free_port()
    argv = [
        ROOT / ".venv" / "bin" / "websockify",
        "--ssl-only",
        f"--cert={cert}",
        f"--key={key}",
        f"127.0.0.1:{port}",
        desktop.upstream_target,
    ]
    with running(argv, port=port, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
        yield port


async def test_a_wss_upstream_is_verified_unless_the_workspace_says_otherwise(
    daphnes, desktop, tls_websockify_desktop, make_workspace, launch, ticket_for, user
):
    """The relay's TLS contexts are made once per process, one verifying and one not: in the
    same process, a self-signed desktop is refused while vnc_tls_verify is on, reached when an
    administrator turned it off, and refused again for a workspace that verifies."""
    (port, _log), _ = daphnes
    url = f"wss://127.0.0.1:{tls_websockify_desktop}/websockify"

    async def connect_to(verify: bool):
        kasm = await db(make_workspace)(
            provisioner="static",
            vnc_target=url,
            vnc_tls_verify=verify,
            rfb_password=desktop.rfb_password,
        )
        session = await db(launch)(user, kasm)
        return await db(ticket_for)(user, session.runtime_id)

    refused = await closed_with(ws_url(await connect_to(verify=True), port))
    lab = await connect_to(verify=False)
    async with viewer(ws_url(lab, port)) as ws:
        init = await RfbClient(ws).handshake(lab["vncPassword"])
    refused_again = await closed_with(ws_url(await connect_to(verify=True), port))

    assert (init.width, init.height) == GEOMETRY
    for code, reason in (refused, refused_again):
        assert (code, reason) == (1011, "The desktop could not be reached")
