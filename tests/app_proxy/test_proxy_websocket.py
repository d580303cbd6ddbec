"""WebSockets through the app proxy (issue 21), served by a real Daphne process (`app_gateway`):
JupyterLab's terminal (JSON text frames, the workspace's credential added by the proxy) and a
binary echo server; the upgrade refused for a foreign Origin or without the app cookie; an open
WebSocket closed within a second of the session's stop and of signing out everywhere."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed, InvalidStatus

from app_proxy.models import AppGrant
from tests.support import apps
from tests.support.database import orm, orm_until
from tests.support.processes import daphne_pid, free_port, rss_mib

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def opened(app_settings, app_gateway, api):
    """Launch a web workspace at `url` as `api`'s user and open it: (workspace, runtime, cookie)."""

    def open_app(workspace) -> tuple:
        runtime = apps.launched_runtime(api, workspace)
        return workspace, runtime, apps.app_cookie(api, app_gateway, runtime)

    async def opener(workspace_factory, *args, **fields):
        return await orm(lambda: open_app(workspace_factory(*args, **fields)))

    return opener


def app_socket(gateway, runtime: str, path: str, cookie: str | None, **kwargs):
    """A WebSocket to the app's origin as a browser opens it (its Origin, its cookie)."""
    headers = {"Cookie": f"{apps.ORIGIN_COOKIE}={cookie}"} if cookie else {}
    kwargs.setdefault("origin", gateway.origin(runtime))
    kwargs.setdefault("subprotocols", ["echo.v2"])  # echo_app's; Jupyter's terminal ignores it
    return connect(
        f"ws://{gateway.host(runtime)}{path}",
        host="127.0.0.1",
        port=gateway.port,
        additional_headers=headers,
        open_timeout=20,
        ping_interval=None,
        max_size=None,
        **kwargs,
    )


@pytest.fixture
async def echo_app():
    """A WebSocket server that sends every message back as it came (text as text, bytes as
    bytes), and the subprotocol it chose."""

    async def echo(connection):
        async for message in connection:
            await connection.send(message)

    port = free_port()
    async with serve(echo, "127.0.0.1", port, subprotocols=["echo.v2"], max_size=None):
        yield f"http://127.0.0.1:{port}/"


@pytest.fixture
async def flood_app():
    """A WebSocket server that sends 64 KiB messages as fast as it is let, until stopped."""
    sent = [0]
    block = b"f" * 65536

    async def flood(connection):
        with contextlib.suppress(ConnectionClosed):
            while True:
                await connection.send(block)
                sent[0] += len(block)

    port = free_port()
    async with serve(flood, "127.0.0.1", port, subprotocols=["echo.v2"], max_size=None):
        yield f"http://127.0.0.1:{port}/", sent


async def terminal(jupyter_app, gateway, runtime, cookie) -> str:
    """A new Jupyter terminal through the proxy (the credential is the proxy's to add)."""
    async with gateway.client(runtime, cookie) as client:
        response = await client.post("/api/terminals")
    assert response.status_code == 200, response.text
    return response.json()["name"]


async def read_until(ws, text: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    seen = ""
    while text not in seen:
        message = await asyncio.wait_for(ws.recv(), max(0.1, deadline - time.monotonic()))
        assert isinstance(message, str)  # JSON text frames, passed as text
        kind, *payload = json.loads(message)
        if kind == "stdout":
            seen += payload[0]


async def test_a_jupyter_terminal_echoes_through_the_proxy_in_text_frames(
    opened, app_gateway, jupyter_app
):
    _, runtime, cookie = await opened(apps.jupyter_workspace, jupyter_app)
    name = await terminal(jupyter_app, app_gateway, runtime, cookie)

    async with app_socket(app_gateway, runtime, f"/terminals/websocket/{name}", cookie) as ws:
        await ws.send(json.dumps(["stdin", "echo hello-4711 | rev\r"]))
        await read_until(ws, "1174-olleh")


async def test_binary_and_text_messages_and_the_subprotocol_pass_through_unchanged(
    opened, app_gateway, echo_app, api
):
    workspace, runtime, cookie = await opened(apps.web_workspace, echo_app)
    payload = bytes(range(256)) * 4096  # 1 MiB, every byte value

    async with app_socket(
        app_gateway, runtime, "/echo?x=1", cookie, subprotocols=["echo.v1", "echo.v2"]
    ) as ws:
        assert ws.subprotocol == "echo.v2"
        await ws.send(payload)
        assert await asyncio.wait_for(ws.recv(), 10) == payload
        await ws.send("héllo")
        assert await asyncio.wait_for(ws.recv(), 10) == "héllo"
        for n in range(200):
            await ws.send(n.to_bytes(2, "big"))
        for n in range(200):
            assert await asyncio.wait_for(ws.recv(), 10) == n.to_bytes(2, "big")

    # The bytes of the connection reach the grant's counters (written when the grant ends).
    response = await orm(lambda: api.post(f"/api/workspaces/{workspace.id}/stop"))
    assert response.status_code == 200, response.content
    grant = await orm_until(
        lambda: AppGrant.objects.filter(session__runtime_id=runtime, bytes_to_app__gt=0).first()
    )
    # Bytes, not characters: "héllo" is 6 of them.
    sent = len(payload) + len("héllo".encode()) + 200 * 2
    assert (grant.bytes_to_app, grant.bytes_to_browser) == (sent, sent)


async def test_the_upgrade_is_refused_from_another_origin_and_without_the_app_cookie(
    opened, app_gateway, echo_app
):
    _, runtime, cookie = await opened(apps.web_workspace, echo_app)

    with pytest.raises(InvalidStatus) as foreign:
        async with app_socket(app_gateway, runtime, "/", cookie, origin="http://evil.example"):
            pass
    with pytest.raises(InvalidStatus) as anonymous:
        async with app_socket(app_gateway, runtime, "/", None):
            pass
    with pytest.raises(InvalidStatus) as reserved:
        async with app_socket(app_gateway, runtime, "/.workgate/enter", cookie):
            pass

    assert foreign.value.response.status_code == 403
    assert anonymous.value.response.status_code == 403
    assert reserved.value.response.status_code == 403


@pytest.mark.parametrize("how", ["stop", "sign out everywhere"])
async def test_an_open_websocket_is_closed_within_a_second_of_the_end(
    opened, app_gateway, echo_app, api, how
):
    workspace, runtime, cookie = await opened(apps.web_workspace, echo_app)

    async with app_socket(app_gateway, runtime, "/", cookie) as ws:
        await ws.send("still here")
        assert await asyncio.wait_for(ws.recv(), 10) == "still here"
        if how == "stop":
            response = await orm(lambda: api.post(f"/api/workspaces/{workspace.id}/stop"))
        else:
            response = await orm(lambda: api.post("/api/auth/signout-everywhere"))
        assert response.status_code == 200, response.content
        ended_at = time.monotonic()
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(ws.recv(), 5)
        took = time.monotonic() - ended_at

    assert took < 1.0
    assert closed.value.rcvd.code == (4410 if how == "stop" else 4411)
    # And the cookie opens nothing any more.
    async with app_gateway.client(runtime, cookie) as client:
        after = await client.get("/")
    assert after.status_code in (401, 403, 404)
    assert after.json()["success"] is False


async def test_a_browser_that_stops_reading_pauses_the_app_instead_of_filling_the_servers_memory(
    opened, app_gateway, flood_app
):
    url, sent = flood_app
    _, runtime, cookie = await opened(apps.web_workspace, url)
    pid = daphne_pid(app_gateway.port)
    before = rss_mib(pid)

    async with app_socket(app_gateway, runtime, "/", cookie, max_queue=1, close_timeout=1) as ws:
        await ws.recv()
        await asyncio.sleep(3)  # reading nothing while the app would send ~GB/s
        stalled = sent[0]
        grew = rss_mib(pid) - before
        await asyncio.sleep(0.5)
        assert sent[0] - stalled < 4 * 1024 * 1024  # the app is held back too
        for _ in range(100):  # and the stream resumes once the browser reads
            assert len(await asyncio.wait_for(ws.recv(), 10)) == 65536

    assert grew < 40, f"Daphne grew by {grew:.0f} MiB for a browser that stopped reading"


@pytest.mark.parametrize(
    ("code", "close"),
    [
        ("signed_out", 4411),
        ("account_disabled", 4411),
        ("app_not_shared", 4403),
        ("tunnel_required", 4403),
        ("app_grant_ended", 4410),
        ("app_session_ended", 4410),
    ],
)
def test_a_websocket_refused_on_re_admission_closes_with_the_relays_code_for_why(code, close):
    """As the desktop relay does (vnc_proxy/close_codes.py): a sign-out everywhere (or an
    account turned off) is 4411, a workspace no longer shared 4403, only an ended session 4410."""
    from app_proxy.admission import AppRefused
    from app_proxy.proxy import close_for_refusal

    assert close_for_refusal(AppRefused(403, code, "refused"))[0] == close


def test_websocket_byte_counts_are_bytes_not_characters():
    from app_proxy.proxy import frame_size

    assert frame_size("héllo ✓") == len("héllo ✓".encode())  # 10 bytes, 7 characters
    assert frame_size(b"\x00\xff") == 2
