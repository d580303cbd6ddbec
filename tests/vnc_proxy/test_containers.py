"""Desktops of one's own on a real engine: Podman's Docker-compatible service, started for the
test run (tests/support/podman.py), the desktop image built from Debian's packages
(images/desktop), reached through the relay on the engine's network."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import docker
import pytest
from asgiref.sync import sync_to_async

from audit.models import AuditEntry
from sessions_app.models import WorkspaceSession
from sessions_app.provisioners import container
from sessions_app.provisioners.static import rfb_greets
from sessions_app.services import sessions_reconcile
from tests.support.podman import container_exec, remove_containers
from tests.support.processes import wait_for
from tests.support.rfb import RfbClient
from tests.vnc_proxy.conftest import CommunicatorConnection, db, relay_communicator, relay_path
from workspaces.defaults import insert_default_workspaces
from workspaces.models import Workspace

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

SCREEN = (320, 200)
MEMORY = 256 * 2**20
PIDS = 256
READY_WITHIN = 60  # seconds: the image's Xvfb, window manager and x11vnc starting


@pytest.fixture
def engine(podman_engine, settings):
    settings.WORKGATE_CONTAINER_ENGINES = [podman_engine.url]
    settings.WORKGATE_CONTAINER_NETWORK = ""  # a network of each session's own
    settings.WORKGATE_CONTAINER_NETWORK_INTERNAL = True  # nothing leaves the test host
    settings.WORKGATE_CONTAINER_DEPLOYMENT = podman_engine.label_scope
    settings.WORKGATE_CONTAINER_STORAGE_LIMIT = False  # not enforceable on this storage
    settings.WORKGATE_CONTAINER_RESOLUTION = "x".join(map(str, SCREEN))
    settings.WORKGATE_CONTAINER_PIDS_LIMIT = PIDS
    container._unhealthy.clear()
    yield podman_engine
    # The next test's reconciler would take what this one left for orphans.
    remove_containers(podman_engine)


@pytest.fixture
def desktop_workspace(engine, make_workspace):
    return make_workspace(
        provisioner="container", container_image=engine.image, cpu="1 vCPU", memory="256 MB"
    )


def engine_client(engine) -> docker.DockerClient:
    return docker.DockerClient(base_url=engine.url, version="1.41")


def launched(client_for, user, workspace) -> WorkspaceSession:
    """Launch through the API: it answers `starting` at once; the session, once ready."""
    response = client_for(user).post(f"/api/workspaces/{workspace.id}/launch")
    assert response.status_code == 201, response.content
    assert response.json()["status"] == "starting"
    session_id = response.json()["session_id"]

    def settled():
        session = WorkspaceSession.objects.get(pk=session_id)
        return session if session.status != "starting" else None

    session = wait_for(settled, seconds=READY_WITHIN)
    assert session.status == "ready", session.end_reason
    return session


def container_of(engine, session: WorkspaceSession) -> dict | None:
    try:
        return engine_client(engine).api.inspect_container(session.provisioner_state["container"])
    except docker.errors.APIError:
        return None  # Podman answers 500, not 404, for a container that is gone


def paint(engine, session: WorkspaceSession, colour: str) -> None:
    container_exec(
        engine.url, session.provisioner_state["container"], ["xsetroot", "-solid", colour]
    )


async def screen_through_relay(ticket_for, user, session) -> bytes:
    body = await db(ticket_for)(user, session.runtime_id)
    communicator = relay_communicator(relay_path(body))
    await communicator.connect(timeout=10)
    try:
        rfb = RfbClient(CommunicatorConnection(communicator))
        init = await rfb.handshake(body["vncPassword"])
        assert (init.width, init.height) == SCREEN
        return await rfb.capture(*SCREEN)
    finally:
        await communicator.disconnect()


def pixel(screen: bytes, x: int, y: int) -> tuple[int, int, int]:
    blue, green, red, _ = screen[(y * SCREEN[0] + x) * 4 : (y * SCREEN[0] + x) * 4 + 4]
    return red, green, blue


async def test_two_users_of_one_workspace_each_see_a_desktop_of_their_own(
    engine, desktop_workspace, client_for, ticket_for, user, other_user
):
    mine = await sync_to_async(launched)(client_for, user, desktop_workspace)
    theirs = await sync_to_async(launched)(client_for, other_user, desktop_workspace)
    await sync_to_async(paint)(engine, mine, "#ff0000")
    await sync_to_async(paint)(engine, theirs, "#0000ff")

    my_screen = await screen_through_relay(ticket_for, user, mine)
    their_screen = await screen_through_relay(ticket_for, other_user, theirs)

    assert mine.provisioner_state["container"] != theirs.provisioner_state["container"]
    assert mine.rfb_password != theirs.rfb_password
    # The root window's corner (no window covers it): each sees only their own desktop.
    assert pixel(my_screen, 1, SCREEN[1] - 2) == (255, 0, 0)
    assert pixel(their_screen, 1, SCREEN[1] - 2) == (0, 0, 255)


def test_the_catalogs_limits_hold_inside_the_container(engine, desktop_workspace, client_for, user):
    session = launched(client_for, user, desktop_workspace)
    container_id = session.provisioner_state["container"]

    def inside(*command: str) -> str:
        return container_exec(engine.url, container_id, list(command)).strip()

    assert inside("cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes") == str(MEMORY)
    assert inside("cat", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us") == "100000"  # 1 CPU per 100 ms
    assert inside("cat", "/sys/fs/cgroup/pids/pids.max") == str(PIDS)
    assert inside("id", "-u") != "0"
    status = inside("cat", "/proc/self/status")
    assert "CapEff:\t0000000000000000" in status and "NoNewPrivs:\t1" in status
    attributes = container_of(engine, session)
    assert attributes["HostConfig"]["Privileged"] is False
    published = attributes["HostConfig"]["PortBindings"] or {}
    assert not any(published.values())  # the image's port is exposed, bound to no host port
    assert attributes["Config"]["Labels"][container.LABEL_SESSION] == str(session.id)
    assert attributes["Config"]["Labels"][container.LABEL_RUNTIME] == session.runtime_id
    # The password is an environment value, never on the command line of any process.
    assert not any(session.rfb_password in part for part in attributes["Config"]["Cmd"] or [])
    assert session.rfb_password not in inside("ps", "-eo", "args")


def network_of(engine, session: WorkspaceSession) -> dict | None:
    try:
        return engine_client(engine).api.inspect_network(session.provisioner_state["network"])
    except docker.errors.APIError:
        return None


def test_what_a_desktop_prints_cannot_fill_the_hosts_disk(
    engine, desktop_workspace, client_for, user
):
    """The container's log is on the host, outside the writable layer and any storage limit:
    20 MB written to a program's output leaves at most about 1 MiB of it."""
    session = launched(client_for, user, desktop_workspace)
    flood = "head -c 20000000 /dev/zero | tr '\\0' A | fold -w 4000 > /proc/1/fd/1"
    container_exec(engine.url, session.provisioner_state["container"], ["sh", "-c", flood])

    log = Path(container_of(engine, session)["LogPath"])

    assert 10_000 < log.stat().st_size < 2 * 2**20  # the flood reached it, and no more is kept


def test_stopping_the_session_removes_its_container(engine, desktop_workspace, client_for, user):
    session = launched(client_for, user, desktop_workspace)
    assert network_of(engine, session) is not None

    response = client_for(user).post(f"/api/workspaces/{desktop_workspace.id}/stop")

    assert response.status_code == 200
    assert container_of(engine, session) is None
    assert network_of(engine, session) is None
    session.refresh_from_db()
    assert session.status == "terminated" and session.provisioner_state["removed"] is True


def test_a_container_killed_from_outside_ends_its_session(
    engine, desktop_workspace, client_for, user
):
    session = launched(client_for, user, desktop_workspace)
    engine_client(engine).api.kill(session.provisioner_state["container"])

    ended, removed = sessions_reconcile()

    session.refresh_from_db()
    assert (ended, removed) == (1, 0)
    assert (session.status, session.end_reason) == ("terminated", "container_exited")
    entry = AuditEntry.objects.get(action="session_lost")
    assert entry.actor is None and entry.resource == f"session:{session.id}"
    assert entry.details["reason"] == "container_exited"
    assert entry.details["exit_code"] == 137  # SIGKILL
    assert container_of(engine, session) is None  # the end removed what was left of it


def test_the_reconciler_removes_a_container_no_live_session_owns(
    engine, desktop_workspace, client_for, user
):
    """What a stop leaves when the engine was down, or a crash between a session's end and its
    container's removal: the session ended, the container still there."""
    session = launched(client_for, user, desktop_workspace)
    WorkspaceSession.objects.filter(pk=session.pk).update(status="terminated")

    ended, removed = sessions_reconcile()

    assert (ended, removed) == (0, 1)
    assert container_of(engine, session) is None
    assert network_of(engine, session) is None  # the session's own network went too
    assert engine_client(engine).api.inspect_network(engine.network)  # not a session's: kept
    session.refresh_from_db()
    assert session.provisioner_state["removed"] is True
    entry = AuditEntry.objects.get(action="container_removed")
    assert entry.details == {
        "engine": engine.url,
        "container": session.provisioner_state["container"],
        "reason": "no_live_session",
    }
    assert sessions_reconcile() == (0, 0)  # nothing left to do


def test_an_image_the_engine_does_not_have_fails_the_launch_cleanly(
    engine, make_workspace, client_for, user
):
    workspace = make_workspace(provisioner="container", container_image="localhost/no-such:image")

    response = client_for(user).post(f"/api/workspaces/{workspace.id}/launch")

    assert response.status_code == 503
    assert "localhost/no-such:image" in response.json()["detail"]
    session = WorkspaceSession.objects.get()
    assert (session.status, session.end_reason) == ("error", "start_failed")
    assert AuditEntry.objects.get(action="launch_failed").details["cause"] == (
        "provisioner_unavailable"
    )
    labelled = engine_client(engine).api.containers(
        all=True, filters={"label": f"{container.LABEL_SESSION}={session.id}"}
    )
    assert labelled == []


def test_launches_spread_over_the_engines_that_answer(
    engine, desktop_workspace, client_for, make_user, settings, tmp_path
):
    """Three engines: one down, and two that answer. (The second is the same Podman service
    reached through another path to its socket: a second host, as far as the gateway can tell.)"""
    down = f"unix://{tmp_path}/no-engine.sock"
    second = tmp_path / "second-host.sock"
    second.symlink_to(engine.url.removeprefix("unix://"))
    settings.WORKGATE_CONTAINER_ENGINES = [down, engine.url, f"unix://{second}"]

    placed = [
        launched(client_for, make_user(), desktop_workspace).provisioner_state["engine"]
        for _ in range(3)
    ]

    assert placed == [engine.url, f"unix://{second}", engine.url]


def reaches(engine, session: WorkspaceSession, target: str) -> bool:
    """Does a program on `session`'s desktop get a connection to host:port `target`?"""
    host, port = target.rsplit(":", 1)
    connect = ["timeout", "3", "bash", "-c", f"exec 3<>/dev/tcp/{host}/{port}"]
    with contextlib.closing(engine_client(engine)) as client:
        desktop = client.containers.get(session.provisioner_state["container"])
        return desktop.exec_run(connect).exit_code == 0


@pytest.mark.parametrize("internal", [True, False], ids=["no way out", "a way out"])
def test_no_desktop_reaches_another_sessions_desktop(
    engine, desktop_workspace, client_for, make_user, settings, internal
):
    """On a shared network, only a session's 8-character VNC password would stand between one
    desktop's user and another's screen: each session has a network of its own, and the
    engine host's firewall (held by the fixture, as deployment.md has every Podman host hold
    it) keeps those networks apart, which Podman 4.3's own `isolate` option did not."""
    settings.WORKGATE_CONTAINER_NETWORK_INTERNAL = internal
    mine = launched(client_for, make_user(), desktop_workspace)
    theirs = launched(client_for, make_user(), desktop_workspace)

    assert mine.provisioner_state["network"] != theirs.provisioner_state["network"]
    assert rfb_greets(theirs.upstream_target) and rfb_greets(mine.upstream_target)  # the gateway
    assert reaches(engine, mine, mine.upstream_target)  # its own desktop, from inside
    assert not reaches(engine, mine, theirs.upstream_target)
    assert not reaches(engine, theirs, mine.upstream_target)


def test_desktops_join_the_shared_network_when_one_is_named(
    engine, desktop_workspace, client_for, user, settings
):
    settings.WORKGATE_CONTAINER_NETWORK = engine.network

    session = launched(client_for, user, desktop_workspace)

    assert session.provisioner_state["network"] == engine.network
    assert "own_network" not in session.provisioner_state
    attached = container_of(engine, session)["NetworkSettings"]["Networks"]
    assert list(attached) == [engine.network]
    assert session.upstream_target.startswith(engine.subnet.rsplit(".", 2)[0])
    client_for(user).post(f"/api/workspaces/{desktop_workspace.id}/stop")
    assert network_of(engine, session) is not None  # the shared network stays


async def test_the_secure_browser_shows_its_start_page_through_the_relay(
    engine, client_for, ticket_for, user
):
    """The default Secure Browser, on the browser image: Chromium in kiosk mode, the only
    program on its screen, opening the workspace's BROWSER_URL (here a page of one colour: the
    desktops' network has no way out in the tests)."""
    await db(insert_default_workspaces)()
    await db(Workspace.objects.filter(pk="ws-secure-browser").update)(
        container_image=engine.browser_image,
        container_environment=json.dumps(
            {"BROWSER_URL": "data:text/html,<body style='background:%2300ff00'>"}
        ),
    )
    workspace = await db(Workspace.objects.get)(pk="ws-secure-browser")
    session = await sync_to_async(launched)(client_for, user, workspace)

    body = await db(ticket_for)(user, session.runtime_id)
    communicator = relay_communicator(relay_path(body))
    await communicator.connect(timeout=10)
    viewer = RfbClient(CommunicatorConnection(communicator))
    await viewer.handshake(body["vncPassword"])
    try:
        # Chromium draws its page a few seconds after the screen first greets.
        for _ in range(60):
            # A quarter in from the corner: x11vnc draws the pointer, at the centre, in the screen.
            seen = pixel(await viewer.capture(*SCREEN), SCREEN[0] // 4, SCREEN[1] // 4)
            if seen == (0, 255, 0):
                break
            await asyncio.sleep(0.5)
    finally:
        await communicator.disconnect()
    assert seen == (0, 255, 0)
    assert session.provisioner_state["network"] != engine.network


def test_a_stop_while_the_engine_is_down_is_finished_by_the_reconciler(
    engine, desktop_workspace, client_for, user
):
    session = launched(client_for, user, desktop_workspace)
    socket = Path(engine.url.removeprefix("unix://"))
    away = socket.with_name("away.sock")
    socket.rename(away)  # the engine stops answering at its address
    try:
        response = client_for(user).post(f"/api/workspaces/{desktop_workspace.id}/stop")
        assert sessions_reconcile() == (0, 0)  # nothing can be said of an engine that is down
    finally:
        away.rename(socket)

    assert response.status_code == 200  # the session ends whatever the engine does
    session.refresh_from_db()
    assert session.status == "terminated" and "removed" not in session.provisioner_state
    assert container_of(engine, session) is not None  # left behind, for now

    assert sessions_reconcile() == (0, 1)
    assert container_of(engine, session) is None and network_of(engine, session) is None
    session.refresh_from_db()
    assert session.provisioner_state["removed"] is True
    assert AuditEntry.objects.filter(action="container_removed").count() == 1


def test_an_engine_that_refuses_a_desktop_is_not_taken_for_one_that_is_down(
    engine, desktop_workspace, client_for, user, other_user, settings
):
    """Asked to limit the writable layer on storage that cannot (this machine's), the engine
    refuses; the next launch that asks nothing of the kind goes to the same engine at once."""
    settings.WORKGATE_CONTAINER_STORAGE_LIMIT = True

    refused = client_for(user).post(f"/api/workspaces/{desktop_workspace.id}/launch")

    assert refused.status_code == 503
    assert refused.json()["detail"] == (
        "The container engine refused to start the desktop; an administrator can find why in "
        "the gateway's log."
    )
    failed = WorkspaceSession.objects.get(user=user)
    assert (failed.status, failed.end_reason) == ("error", "start_failed")
    assert remove_containers(engine) == 0  # nothing left of it, its network neither
    settings.WORKGATE_CONTAINER_STORAGE_LIMIT = False
    assert launched(client_for, other_user, desktop_workspace).status == "ready"


def test_a_desktop_that_exits_while_starting_fails_the_launch_at_once(
    engine, desktop_workspace, client_for, user, settings
):
    settings.WORKGATE_CONTAINER_RESOLUTION = "1x1"  # the image refuses it and exits

    response = client_for(user).post(f"/api/workspaces/{desktop_workspace.id}/launch")
    assert response.status_code == 201 and response.json()["status"] == "starting"
    session = wait_for(
        lambda: WorkspaceSession.objects.exclude(status="starting").filter(user=user).first(),
        seconds=READY_WITHIN / 2,  # well before the readiness timeout
    )

    assert (session.status, session.end_reason) == ("error", "start_failed")
    failed = AuditEntry.objects.get(action="launch_failed")
    assert failed.details["cause"] == "desktop_exited"
    # Removed once the end has committed, by the thread that ended it.
    wait_for(lambda: WorkspaceSession.objects.get(pk=session.pk).provisioner_state.get("removed"))
    assert container_of(engine, session) is None and network_of(engine, session) is None
