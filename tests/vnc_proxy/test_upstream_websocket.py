"""A WebSocket desktop (KasmVNC and the like) is relayed to only if it is one: its first message
must be RFB's greeting, as a TCP desktop's first bytes must. Its Basic credentials travel over
TLS only. And however it fails, the viewer and the audit log learn only that the desktop could
not be reached, so whoever sets a workspace's target cannot use the relay to learn what listens
at an address (the cause goes to the server log)."""

from __future__ import annotations

import logging
import socket

import pytest
from websockets.asyncio.server import serve

from audit.models import AuditEntry
from sessions_app.models import WorkspaceSession
from tests.support.processes import free_port
from tests.vnc_proxy.conftest import db, refused_with, relay_communicator, relay_path
from vnc_proxy import upstreams
from vnc_proxy.models import Ticket

pytestmark = pytest.mark.django_db(transaction=True)

UNREACHABLE = (1011, "The desktop could not be reached")


@pytest.fixture
async def websocket_service():
    """start(greeting) -> the ws:// URL of a loopback WebSocket service that sends `greeting`
    (None: nothing; "close": closes at once) and then echoes; and the list of what it received."""
    servers = []
    received: list = []

    async def start(greeting) -> str:
        async def handler(ws):
            if greeting == "close":
                return
            if greeting is not None:
                await ws.send(greeting)
            async for message in ws:
                received.append(message)
                await ws.send(message)

        server = await serve(handler, "127.0.0.1", 0)
        servers.append(server)
        return f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/websockify"

    yield start, received
    for server in servers:
        server.close()
        await server.wait_closed()


def websocket_runtime(make_runtime, user, url: str, **fields) -> WorkspaceSession:
    return make_runtime(
        user, upstream_kind=WorkspaceSession.UpstreamKind.WEBSOCKET, upstream_target=url, **fields
    )


def relay_audit() -> list[tuple[str, bool, dict]]:
    return list(
        AuditEntry.objects.filter(action__startswith="vnc_")
        .order_by("id")
        .values_list("action", "success", "details")
    )


def failed_to_reach(runtime: WorkspaceSession) -> list[tuple[str, bool, dict]]:
    """The audit of a relay connection refused because the desktop could not be reached."""
    return [
        (
            "vnc_connect",
            False,
            {"workspaceId": runtime.runtime_id, "upstream": "websocket", "error": UNREACHABLE[1]},
        )
    ]


@pytest.mark.parametrize(
    "greeting",
    [None, '{"type": "welcome"}', b"\x20\x02\x00\x00", b"RFB", "close"],
    ids=["echo", "json-chat", "mqtt-connack", "cut-short", "closes-at-once"],
)
async def test_a_websocket_service_that_is_no_vnc_server_is_refused_before_a_byte_passes(
    websocket_service, make_runtime, ticket_for, user, monkeypatch, greeting
):
    monkeypatch.setattr(upstreams, "CONNECT_TIMEOUT", 0.5)  # the greeting's wait, for the echo
    start, received = websocket_service
    runtime = await db(websocket_runtime)(make_runtime, user, await start(greeting))
    body = await db(ticket_for)(user, runtime.runtime_id)
    communicator = relay_communicator(relay_path(body))

    connected, _ = await communicator.connect(timeout=10)
    await communicator.send_input({"type": "websocket.receive", "bytes": b"SELECT secrets\n"})
    output = await communicator.receive_output(timeout=10)
    await communicator.wait()

    assert connected
    assert output["type"] == "websocket.close"  # nothing from the service came first
    assert (output["code"], output["reason"]) == UNREACHABLE
    assert received == []  # and nothing from the viewer reached it
    assert await db(relay_audit)() == failed_to_reach(runtime)
    assert (await db(Ticket.objects.get)()).closed_at is not None


async def test_a_websocket_desktops_greeting_is_passed_on_whole(make_runtime, ticket_for, user):
    """The greeting may come in more than one message (websockify forwards what each read of
    the socket got); the relay passes each on as it came."""
    received = []

    async def split_greeting(ws):
        await ws.send(b"RFB 003")
        await ws.send(b".008\n")
        async for message in ws:
            received.append(message)

    async with serve(split_greeting, "127.0.0.1", 0) as server:
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
        runtime = await db(websocket_runtime)(make_runtime, user, url)
        body = await db(ticket_for)(user, runtime.runtime_id)
        communicator = relay_communicator(relay_path(body))

        connected, _ = await communicator.connect(timeout=10)
        first = await communicator.receive_output(timeout=10)
        second = await communicator.receive_output(timeout=10)
        await communicator.send_input({"type": "websocket.receive", "bytes": b"RFB 003.008\n"})
        await communicator.disconnect()

    assert connected
    assert (first["bytes"], second["bytes"]) == (b"RFB 003", b".008\n")
    assert received == [b"RFB 003.008\n"]
    assert [(action, success) for action, success, _ in await db(relay_audit)()] == [
        ("vnc_connect", True),
        ("vnc_disconnect", True),
    ]


def _http(status: int, reason: str) -> bytes:
    head = f"HTTP/1.1 {status} {reason}\r\nServer: admin-console/2.4\r\nContent-Length: 0\r\n"
    return f"{head}\r\n".encode()


@pytest.mark.parametrize(
    ("answer", "logged"),
    [
        (_http(401, "Unauthorized"), "HTTP 401"),
        (_http(404, "Not Found"), "HTTP 404"),
        (_http(500, "Internal Server Error"), "HTTP 500"),
        (b"", "did not receive a valid HTTP response"),
        ("closed port", "ConnectionRefusedError"),
        ("silent port", "did not answer in time"),
    ],
    ids=["401", "404", "500", "hangs-up", "closed-port", "silent-port"],
)
async def test_what_answers_at_a_websocket_desktops_address_is_not_told_to_the_viewer_or_the_audit(
    http_recorder, make_runtime, ticket_for, user, monkeypatch, caplog, answer, logged
):
    """An HTTP status, a closed port and a silent one look the same to the viewer and in the
    audit entry a catalog administrator reads; the server log keeps the cause."""
    monkeypatch.setattr(upstreams, "CONNECT_TIMEOUT", 0.5)
    silent = socket.create_server(("127.0.0.1", 0))  # connections wait in its backlog, unanswered
    if answer == "closed port":
        port = free_port()
    elif answer == "silent port":
        port = silent.getsockname()[1]
    else:
        port = http_recorder(answer).port
    url = f"ws://127.0.0.1:{port}/websockify"
    runtime = await db(websocket_runtime)(make_runtime, user, url)
    body = await db(ticket_for)(user, runtime.runtime_id)

    with caplog.at_level(logging.WARNING, logger="vnc_proxy.consumers"):
        closed = await refused_with(relay_communicator(relay_path(body)))

    assert closed == UNREACHABLE
    assert await db(relay_audit)() == failed_to_reach(runtime)
    [record] = [r for r in caplog.records if r.name == "vnc_proxy.consumers"]
    assert logged in record.getMessage()
    assert f"session:{runtime.id}" in record.getMessage()
    silent.close()


async def test_basic_credentials_are_never_sent_over_plain_ws(
    http_recorder, make_runtime, ticket_for, user, caplog
):
    """A workspace saved with a ws:// target and a Basic secret before saving one was refused:
    the relay refuses it too, without connecting, rather than send the secret unencrypted."""
    desktop = http_recorder(_http(401, "Unauthorized"))
    runtime = await db(websocket_runtime)(
        make_runtime,
        user,
        f"ws://127.0.0.1:{desktop.port}/websockify",
        upstream_username="viewer",
        upstream_secret="s3cret",
    )
    body = await db(ticket_for)(user, runtime.runtime_id)

    with caplog.at_level(logging.WARNING, logger="vnc_proxy.consumers"):
        closed = await refused_with(relay_communicator(relay_path(body)))

    assert closed == UNREACHABLE
    assert desktop.requests == []  # no Authorization header, nor any request at all
    assert await db(relay_audit)() == failed_to_reach(runtime)
    assert "Basic credentials over ws://" in caplog.text
    assert "s3cret" not in caplog.text
