"""The nginx configuration in docs/deployment.md, run as written in front of two Daphne processes.

The block runs as written, with only ports, certificate and log path changed (tests/support/
nginx.py says how). Through that nginx,
over HTTPS on ::1, as a client would: sign in and mint a ticket (the client address and scheme
Workgate records are nginx's, not the client's forged ones), open the desktop's VNC stream through
the WebSocket upgrade to a real x11vnc, read an assistant answer over SSE event by event while the
model is still answering, and take a Socket.IO socket from long-polling to WebSocket. The curl
walk-through and the two Python programs of docs/api.md run through it as a reader would run
them, as does deployment.md's command adding a TigerVNC host, and a rolling restart (one Daphne
process stopped) loses no request.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
import httpx
import pytest
import socketio
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from accounts.models import User
from audit.models import AuditEntry
from core.network import Origin
from sessions_app.services import session_launch
from streaming.models import Assistant, History
from tests.support import processes
from tests.support.database import orm, orm_until
from tests.support.desktops import GEOMETRY
from tests.support.nginx import (
    DOCS,
    WAIT,
    Gateway,
    documented,
    needs_nginx,
    replace,
    running_gateway,
)
from tests.support.providers import FakeProvider, Reply, openai_chunk
from tests.support.rfb import RfbClient
from tests.support.signin import PASSWORD
from workspaces.models import Workspace

FORGED = "203.0.113.7"  # what a client claims in X-Forwarded-For; nginx must replace it

pytestmark = [
    pytest.mark.integration,
    pytest.mark.django_db(transaction=True),
    needs_nginx,
]


@pytest.fixture(scope="module")
def provider():
    """The model behind `openai` assistants: a loopback server that speaks OpenAI's stream."""
    server = FakeProvider().start()
    yield server
    server.stop()


def openai_at(provider: FakeProvider) -> dict[str, str]:
    return {"OPENAI_BASE_URL": provider.base_url + "/v1", "OPENAI_API_KEY": "sk-test"}


@pytest.fixture(scope="module")
def gateway(django_db_setup, provider, tmp_path_factory):
    with running_gateway(tmp_path_factory.mktemp("nginx"), **openai_at(provider)) as started:
        yield started


def linux_desktop() -> Workspace:
    """The workspace docs/api.md's examples launch, as a local desktop."""
    return Workspace.objects.create(
        id="ws-linux-desktop",
        name="Linux Desktop",
        type=Workspace.Type.LINUX,
        connection_type=Workspace.ConnectionType.VNC,
        provisioner=Workspace.Provisioner.LOCAL_DESKTOP,
        requires_netbird=False,
    )


def credentials(user) -> dict:
    return {"email": user.email, "password": PASSWORD}


async def sign_in(gateway: Gateway, user) -> str:
    async with gateway.client() as client:
        response = await client.post(
            "/api/auth/signin",
            json=credentials(user),
            headers={"X-Forwarded-For": FORGED, "X-Forwarded-Proto": "http"},
        )
    assert response.status_code == 200, response.text
    return response.json()["token"]


def newest(action: str, **filters) -> AuditEntry:
    return AuditEntry.objects.filter(action=action, **filters).order_by("id").last()


async def test_plain_http_is_sent_to_https(gateway):
    async with httpx.AsyncClient(timeout=WAIT) as client:
        response = await client.get(f"http://[::1]:{gateway.http_port}/login?next=/")

    assert response.status_code == 301
    assert response.headers["location"] == "https://[::1]/login?next=/"


async def test_workgate_records_the_address_nginx_saw_not_the_one_the_client_claims(gateway, user):
    token = await sign_in(gateway, user)
    async with gateway.client() as client:
        me = await client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
    entry = await orm(newest, "login", actor=user)

    assert me.status_code == 200 and me.json()["profile"]["email"] == user.email
    assert me.headers["strict-transport-security"] == "max-age=31536000"
    assert entry.ip_address == "::1"  # Daphne's peer was nginx on 127.0.0.1
    assert FORGED not in str(entry.details)


async def test_a_viewer_reaches_the_desktop_through_nginx_and_its_ticket_stays_out_of_the_log(
    gateway, user
):
    workspace = await orm(linux_desktop)
    token = await sign_in(gateway, user)
    bearer = {"Authorization": f"Bearer {token}", "X-Forwarded-For": FORGED}
    async with gateway.client() as client:
        launched = await client.post(f"/api/workspaces/{workspace.id}/launch", headers=bearer)
        assert launched.status_code in (200, 201), launched.text
        minted = await client.post(
            "/api/agents/workspace/ticket",
            json={"workspaceId": launched.json()["runtime_id"]},
            headers=bearer,
        )
    assert minted.status_code == 200, minted.text
    body = minted.json()
    url = body["vncUrl"]
    ticket = parse_qs(urlsplit(url).query)["ticket"][0]

    def viewer(origin: str):
        return connect(
            url, ssl=gateway.ssl, origin=origin, subprotocols=["binary"], open_timeout=WAIT
        )

    with pytest.raises(InvalidStatus) as refused:
        async with viewer("https://evil.example"):
            pass
    async with viewer(gateway.url) as ws:
        rfb = RfbClient(ws)
        init = await asyncio.wait_for(rfb.handshake(body["vncPassword"]), WAIT)
        rectangles = await asyncio.wait_for(rfb.framebuffer_update(init.width, init.height), WAIT)
    issued = await orm(newest, "ticket_issued", actor=user)

    # The scheme and port the client used, from X-Forwarded-Proto and Host.
    assert url.startswith(f"wss://[::1]:{gateway.https_port}/api/agents/workspace/vnc/")
    assert refused.value.response.status_code == 403  # the origin check, behind the proxy too
    assert (init.width, init.height) == GEOMETRY and rectangles >= 1
    assert issued.ip_address == "::1"
    log = gateway.access_log()
    assert " 101 " in log and "/api/agents/workspace/vnc/" in log
    assert ticket not in log and "ticket=" not in log


async def test_sse_events_pass_through_as_they_happen(gateway, provider, user):
    assistant = await orm(Assistant.objects.create, name="GPT", provider="openai", model="gpt-t")
    provider.reset()
    provider.script(
        Reply(
            [
                openai_chunk({"role": "assistant", "content": ""}),
                openai_chunk({"content": "Partial "}),
                openai_chunk({"content": "answer"}),
            ],
            hang=True,  # the model is still answering; a buffering proxy would show nothing yet
        )
    )
    token = await sign_in(gateway, user)
    request = {"inputs": ["Tell me"], "requestArgs": {"assistantId": str(assistant.pk)}}
    seen = []
    async with (
        gateway.client() as client,
        client.stream(
            "POST",
            "/api/ai/personal-stream/qanda-stream",
            json=request,
            headers={"Authorization": f"Bearer {token}"},
        ) as response,
    ):
        async with asyncio.timeout(WAIT):
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    seen.append(json.loads(line[len("data: ") :]))
                    if seen[-1].get("prompt") == "Partial answer":
                        break

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    # connected, then the answer so far, while the model is still answering
    assert seen[0]["type"] == "connected" and seen[-1]["prompt"] == "Partial answer"
    # Closing the stream at nginx reached Daphne: the turn stopped and let go of the model.
    assert await asyncio.to_thread(provider.client_left.wait, WAIT)
    history = await orm_until(lambda: History.objects.filter(user=user).first(), timeout=WAIT)
    assert history.status == History.Status.CANCELLED
    assert history.completion == "Partial answer"


async def test_a_socket_io_client_upgrades_to_websocket_and_receives_a_turn(gateway, user):
    token = await sign_in(gateway, user)
    streams: asyncio.Queue = asyncio.Queue()
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=gateway.ssl))
    client = socketio.AsyncClient(http_session=session)
    client.on("RECEIVE_STREAM", streams.put)
    try:
        await client.connect(gateway.url, auth={"token": token}, wait_timeout=WAIT)
        async with gateway.client() as http:
            answered = await http.post(
                "/api/ai/personal/qanda",
                json={
                    "inputs": ["what is running?"],
                    "requestArgs": {"socketId": client.get_sid()},
                },
                headers={"Authorization": f"Bearer {token}"},
            )
        final = answered.json()["outputs"][0]
        async with asyncio.timeout(WAIT):
            while (payload := await streams.get()).get("prompt") != final:
                pass
        transport = client.transport()
    finally:
        await client.disconnect()
        await session.close()

    assert answered.status_code == 200
    assert payload["type"] == "STREAM"
    assert transport == "websocket"


def run_documented_client(gateway: Gateway, user, source: str, tmp_path: Path) -> list[str]:
    """Run a program from docs/api.md as its reader would, trusting the gateway's certificate
    through SSL_CERT_FILE as the document says; its output lines."""
    script = tmp_path / "client.py"
    script.write_text(source)
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith(("SSL_", "DJANGO"))
    }
    finished = subprocess.run(
        [processes.PYTHON, script],
        env={
            **environment,
            "WORKGATE_URL": gateway.url,
            "WORKGATE_EMAIL": user.email,
            "WORKGATE_PASSWORD": PASSWORD,
            "SSL_CERT_FILE": str(gateway.cert),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    return finished.stdout.splitlines()


def test_the_python_client_in_the_api_guide_works_through_nginx(gateway, user, tmp_path):
    linux_desktop()
    client, _socketio = documented("python", "api.md")

    output = run_documented_client(gateway, user, client, tmp_path)
    stopped = newest("stop_workspace", actor=user)

    assert output[0] == "[Listing workspaces]"
    assert any("Linux Desktop" in line for line in output)
    assert re.fullmatch(r"session [0-9a-f-]{36} ready", output[-2])
    assert re.fullmatch(r"RFB 003\.008 {}x{} '.+'".format(*GEOMETRY), output[-1])
    assert stopped is not None and stopped.resource == "workspace:ws-linux-desktop"
    assert stopped.ip_address == "::1"


def test_the_socket_io_example_in_the_api_guide_works_through_nginx(gateway, user, tmp_path):
    _client, socket_io = documented("python", "api.md")

    output = run_documented_client(gateway, user, socket_io, tmp_path)
    turn = History.objects.filter(user=user).latest("id")

    assert output[-2] == f"final: {turn.completion}"
    assert output[-1] == "streamingFailed: False"


def walk_through() -> list[tuple[str, str, str]]:
    """api.md's curl walk-through: each command block with the output block shown after it
    (its language, json or none, and its text)."""
    text = (DOCS / "api.md").read_text()
    found = re.findall(r"^```sh\n(.*?)^```\n\n```(\w*)\n(.*?)^```", text, re.S | re.M)
    return [step for step in found if "curl" in step[0]]


def keys(value):
    """The shape of a JSON value: its keys, all the way down (lists by their first item)."""
    if isinstance(value, dict):
        return {key: keys(item) for key, item in value.items()}
    if isinstance(value, list):
        return [keys(value[0])] if value else []
    return None


def test_the_curl_walk_through_in_the_api_guide_works_through_nginx(gateway, tmp_path):
    """The commands run as written, in one shell, through nginx (curl trusting the gateway's
    certificate); each answer has the shape the guide shows, the catalog exactly its lines."""
    User.objects.create_user(email="ada@example.com", password="a long passphrase 42")
    steps = walk_through()
    assert len(steps) == 7
    marker = "=== step ==="
    script = "set -euo pipefail\n" + "".join(f"echo '{marker}'\n{c}" for c, _, _ in steps)
    script = replace(script, "BASE=http://127.0.0.1:8000", f"BASE={gateway.url}")

    finished = subprocess.run(
        ["bash", "-c", script],
        env={**os.environ, "CURL_CA_BUNDLE": str(gateway.cert)},
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert finished.returncode == 0, finished.stderr[-3000:]
    outputs = finished.stdout.split(f"{marker}\n")[1:]
    assert len(outputs) == len(steps)
    for (command, language, shown), output in zip(steps, outputs, strict=True):
        if language == "json":
            assert keys(json.loads(output)) == keys(json.loads(shown)), command
    signed_in, catalog, stream, launched, runtime, ticket, stopped = outputs
    assert json.loads(signed_in)["profile"]["email"] == "ada@example.com"
    assert catalog == steps[1][2]  # the five defaults, as the guide lists them
    events = [json.loads(line[6:]) for line in stream.splitlines() if line.startswith("data: ")]
    assert [events[0]["type"], events[-2]["type"], events[-1]["type"]] == [
        "connected",
        "complete",
        "done",
    ]
    assert json.loads(launched)["status"] == "ready"
    assert json.loads(runtime)["workspaceId"] == json.loads(launched)["runtime_id"]
    vnc_url = json.loads(ticket)["vncUrl"]
    assert vnc_url.startswith(f"wss://[::1]:{gateway.https_port}/api/agents/workspace/vnc/")
    assert stopped.splitlines()[0] == '{"message":"Workspace stopped successfully"}'
    assert "stop_workspace  workspace:ws-linux-desktop" in stopped.splitlines()[1]


@pytest.mark.usefixtures("desktops")
async def test_a_vnc_host_added_as_deployment_md_says_is_reached_through_nginx(
    gateway, make_user, user
):
    """ "Adding a KasmVNC or TigerVNC host": the administrator's curl, as written, creates the
    workspace (an x11vnc with a VNC password stands in for TigerVNC; its address and password
    replace the document's examples), and a user reaches it through the relay, answering the
    desktop's VNC challenge with the ticket's vncPassword."""
    host = await orm(linux_desktop)  # started here, by this process: the "desktop host"
    stand_in = await orm(launch_here, await orm(make_user, "tiger-owner@example.com"), host)
    admin = await orm(make_user, "root-tiger@example.com", admin=True)
    (create,) = [
        block for block in documented("sh", "deployment.md") if "Design workstation" in block
    ]
    create = replace(create, "https://gw.example.com", gateway.url)
    create = replace(create, "tcp://10.20.0.21:5901", f"tcp://{stand_in.upstream_target}")
    create = replace(create, "the-vnc-password", stand_in.rfb_password)

    created = await asyncio.to_thread(
        subprocess.run,
        ["bash", "-c", f"set -euo pipefail\n{create}"],
        env={
            **os.environ,
            "ADMIN_TOKEN": await sign_in(gateway, admin),
            "CURL_CA_BUNDLE": str(gateway.cert),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert created.returncode == 0, created.stderr
    workspace = json.loads(created.stdout)["workspace"]
    assert workspace["provisioner"] == "static" and workspace["rfb_password_set"] is True
    token = await sign_in(gateway, user)
    async with gateway.client(headers={"Authorization": f"Bearer {token}"}) as client:
        launched = await client.post(f"/api/workspaces/{workspace['id']}/launch")
        assert launched.status_code == 201, launched.text
        minted = await client.post(
            "/api/agents/workspace/ticket", json={"workspaceId": launched.json()["runtime_id"]}
        )
    body = minted.json()
    async with connect(
        body["vncUrl"], ssl=gateway.ssl, origin=gateway.url, subprotocols=["binary"]
    ) as ws:
        init = await asyncio.wait_for(RfbClient(ws).handshake(body["vncPassword"]), WAIT)

    assert (init.width, init.height) == GEOMETRY
    assert body["vncPassword"] == stand_in.rfb_password


def launch_here(owner, workspace: Workspace):
    """A local desktop started by this process (under `desktops`), for a test to point at."""
    session, _ = session_launch(
        user=owner,
        workspace_id=workspace.id,
        origin=Origin(ip="127.0.0.1", user_agent="test"),
        mfa_verified=False,
    )
    assert session.status == "ready"
    return session


async def test_with_one_daphne_process_stopped_nginx_sends_every_request_to_the_other(
    provider, user, tmp_path
):
    with running_gateway(tmp_path, **openai_at(provider)) as gateway:
        token = await sign_in(gateway, user)
        bearer = {"Authorization": f"Bearer {token}"}
        async with gateway.client() as client:
            before = [(await client.get("/api/auth/me", headers=bearer)).status_code for _ in "ab"]
            gateway.daphnes[0].close()  # as `systemctl restart workgate@8001` begins
            during = []
            for _ in range(3):  # a POST first: nginx may pass it on only if it was never sent
                signed_in = await client.post("/api/auth/signin", json=credentials(user))
                me = await client.get("/api/auth/me", headers=bearer)
                during += [signed_in.status_code, me.status_code]

    served_first = (tmp_path / "daphne-0.log").read_text()

    assert before == [200, 200] and "/api/auth/me" in served_first  # both processes served
    assert during == [200] * 6
