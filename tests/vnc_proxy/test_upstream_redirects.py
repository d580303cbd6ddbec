"""A WebSocket desktop (KasmVNC and the like) that answers the relay with a redirect is refused:
the relay never follows it, so the session's Basic credentials and the user's screen never go
to an address the admin did not configure."""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Iterator

import pytest

from audit.models import AuditEntry
from sessions_app.models import WorkspaceSession
from tests.support.processes import free_port
from tests.vnc_proxy.conftest import db, refused_with, relay_communicator, relay_path

pytestmark = pytest.mark.django_db(transaction=True)


class _Recorder(socketserver.ThreadingTCPServer):
    """A loopback HTTP server that answers every request with `response` and keeps what it got."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, response: bytes):
        self.response = response
        self.requests: list[bytes] = []
        super().__init__(("127.0.0.1", port), _Handler)


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            line = self.rfile.readline()
            if not line:
                break
            head += line
        self.server.requests.append(head)
        self.wfile.write(self.server.response)


@pytest.fixture
def serve() -> Iterator:
    servers: list[_Recorder] = []

    def start(response: bytes) -> _Recorder:
        server = _Recorder(free_port(), response)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_a_redirecting_websocket_desktop_is_refused_and_the_target_never_contacted(
    serve, make_runtime, ticket_for, user, status
):
    elsewhere = serve(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
    elsewhere_url = f"ws://127.0.0.1:{elsewhere.server_address[1]}/steal"
    desktop = serve(
        f"HTTP/1.1 {status} Moved\r\nLocation: {elsewhere_url}\r\n"
        "Content-Length: 0\r\nConnection: close\r\n\r\n".encode()
    )
    runtime = await db(make_runtime)(
        user,
        upstream_kind=WorkspaceSession.UpstreamKind.WEBSOCKET,
        upstream_target=f"ws://127.0.0.1:{desktop.server_address[1]}/websockify",
        upstream_username="viewer",
        upstream_secret="s3cret",
    )
    body = await db(ticket_for)(user, runtime.runtime_id)

    code, reason = await refused_with(relay_communicator(relay_path(body)))

    assert (code, reason) == (1011, f"the desktop refused the connection (HTTP {status})")
    assert len(desktop.requests) == 1
    assert b"authorization: basic" in desktop.requests[0].lower()  # the configured desktop only
    assert elsewhere.requests == []
    failure = await db(AuditEntry.objects.filter(action="vnc_connect").latest)("id")
    assert (failure.success, failure.details["error"]) == (False, reason)
