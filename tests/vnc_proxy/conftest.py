"""Fixtures for desktops, tickets and the relay: real local desktops (Xvfb + x11vnc) started
through the launch API, tickets through the ticket API, and the relay through the full ASGI
application (origin check included) with WebsocketCommunicator."""

from __future__ import annotations

import socketserver
import ssl
import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import close_old_connections
from django.utils import timezone

from sessions_app.models import WorkspaceSession
from tests.support.nginx import self_signed
from tests.support.processes import free_port
from workspaces.models import Workspace


def db(function):
    """Run sync test code (ORM, API client) from an async test, closing its connection after,
    so no connection outlives the test database."""

    def call(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        finally:
            close_old_connections()

    return sync_to_async(call)


@pytest.fixture
def make_workspace(db):
    counter = {"n": 0}

    def make(**fields) -> Workspace:
        counter["n"] += 1
        fields.setdefault("id", f"ws-vnc{counter['n']:05d}")
        fields.setdefault("name", f"Desktop {counter['n']}")
        fields.setdefault("type", Workspace.Type.LINUX)
        fields.setdefault("description", "A desktop made by a test.")
        fields.setdefault("connection_type", Workspace.ConnectionType.VNC)
        fields.setdefault("provisioner", Workspace.Provisioner.LOCAL_DESKTOP)
        fields.setdefault("requires_netbird", False)
        return Workspace.objects.create(**fields)

    return make


@pytest.fixture
def launch(client_for):
    """Launch a workspace through the API as `user`; the session row, ready."""

    def run(user, workspace: Workspace) -> WorkspaceSession:
        response = client_for(user).post(f"/api/workspaces/{workspace.id}/launch")
        assert response.status_code in (200, 201), response.content
        session = WorkspaceSession.objects.get(pk=response.json()["session_id"])
        assert session.status == WorkspaceSession.Status.READY
        return session

    return run


@pytest.fixture
def desktop(desktops, make_workspace, launch, user):
    """`user`'s ready local desktop."""
    return launch(user, make_workspace())


@pytest.fixture
def make_runtime(make_workspace):
    """A session row in the given status with a relayable upstream, without a real desktop."""

    def make(user, status=WorkspaceSession.Status.READY, **fields) -> WorkspaceSession:
        workspace = fields.pop("workspace", None) or make_workspace(provisioner="static")
        now = timezone.now()
        fields.setdefault("upstream_kind", WorkspaceSession.UpstreamKind.TCP)
        fields.setdefault("upstream_target", "127.0.0.1:9")
        return WorkspaceSession.objects.create(
            user=user,
            workspace=workspace,
            workspace_name=workspace.name,
            workspace_type=workspace.type,
            status=status,
            started_at=now - timedelta(minutes=5),
            ready_at=now if status == WorkspaceSession.Status.READY else None,
            last_seen_at=now,
            provisioner="static",
            rfb_password=fields.pop("rfb_password", "pw123456"),
            **fields,
        )

    return make


@pytest.fixture
def ticket_for(client_for):
    """Mint a ticket through the API; the response body."""

    def mint(user, runtime_id: str) -> dict:
        response = client_for(user).post(
            "/api/agents/workspace/ticket", {"workspaceId": runtime_id}, format="json"
        )
        assert response.status_code == 200, response.content
        return response.json()

    return mint


def relay_path(body: dict) -> str:
    """The path and query of a ticket's vncUrl (what a browser would open)."""
    url = body["vncUrl"]
    return url[url.index("/api/") :]


class RelayClosed(Exception):
    def __init__(self, code, reason):
        super().__init__(f"closed {code}: {reason}")
        self.code = code
        self.reason = reason


class CommunicatorConnection:
    """WebsocketCommunicator with the recv()/send() of a WebSocket client, for RfbClient."""

    def __init__(self, communicator: WebsocketCommunicator):
        self.communicator = communicator

    async def recv(self) -> bytes:
        output = await self.communicator.receive_output(timeout=10)
        if output["type"] == "websocket.send":
            return output["bytes"]
        raise RelayClosed(output.get("code"), output.get("reason", ""))

    async def send(self, data: bytes) -> None:
        await self.communicator.send_input({"type": "websocket.receive", "bytes": data})


def relay_communicator(path: str, *, origin: str | None = None, subprotocols=("binary",)):
    from config.asgi import application

    headers = [(b"origin", origin.encode())] if origin else []
    headers.append((b"user-agent", b"pytest-viewer/1"))
    return WebsocketCommunicator(
        application, path, headers=headers, subprotocols=list(subprotocols)
    )


async def refused_with(communicator: WebsocketCommunicator) -> tuple[int, str]:
    """Connect and expect accept-then-close: (code, reason)."""
    connected, _ = await communicator.connect(timeout=10)
    assert connected
    output = await communicator.receive_output(timeout=10)
    assert output["type"] == "websocket.close", output
    await communicator.wait()
    return output["code"], output.get("reason", "")


# --- A loopback HTTP server standing in for what answers at a WebSocket desktop's address ------


class HttpRecorder(socketserver.ThreadingTCPServer):
    """Answers every request with `response` and keeps each request's head (over TLS with a
    self-signed certificate when given a context)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, response: bytes, tls: ssl.SSLContext | None):
        self.response = response
        self.tls = tls
        self.requests: list[bytes] = []
        super().__init__(("127.0.0.1", port), _RecordingHandler)

    @property
    def port(self) -> int:
        return self.server_address[1]

    def get_request(self):
        connection, address = super().get_request()
        if self.tls is not None:
            connection = self.tls.wrap_socket(connection, server_side=True)
        return connection, address


class _RecordingHandler(socketserver.StreamRequestHandler):
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
def http_recorder(tmp_path) -> Iterator:
    """start(response, tls=False) -> a running HttpRecorder on a free loopback port."""
    servers: list[HttpRecorder] = []

    def start(response: bytes, *, tls: bool = False) -> HttpRecorder:
        context = None
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self_signed(tmp_path))
        server = HttpRecorder(free_port(), response, context)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
