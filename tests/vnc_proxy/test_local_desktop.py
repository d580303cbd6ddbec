"""The local_desktop provisioner with real Xvfb, x11vnc and xterm: private secrets, a process
group any process can stop, desktops that outlive their viewers, and orphans cleaned up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from sessions_app.models import WorkspaceSession
from sessions_app.provisioners.local_desktop import vnc_password_file
from tests.support.processes import ROOT
from tests.vnc_proxy.conftest import (
    GEOMETRY,
    CommunicatorConnection,
    db,
    needs_desktops,
    relay_communicator,
    relay_path,
)
from tests.vnc_proxy.rfb import RfbClient

pytestmark = [pytest.mark.integration, needs_desktops]


def group_members(pgid: int) -> dict[int, tuple[str, bytes, bytes]]:
    """Live processes of a group: {pid: (command, cmdline, environ)}."""
    members = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_bytes()
            fields = stat[stat.rfind(b")") + 2 :].split()
            if int(fields[2]) != pgid or fields[0] == b"Z":
                continue
            command = Path(f"/proc/{entry}/comm").read_text().strip()
            members[int(entry)] = (
                command,
                Path(f"/proc/{entry}/cmdline").read_bytes(),
                Path(f"/proc/{entry}/environ").read_bytes(),
            )
        except (OSError, IndexError):
            continue
    return members


@pytest.mark.django_db
def test_a_desktop_runs_in_its_own_group_with_its_secrets_in_private_files(
    desktops, make_workspace, launch, user, settings, monkeypatch
):
    settings.WORKGATE_LOCAL_DESKTOP_COMMAND = "xterm -geometry 80x24"
    monkeypatch.setenv("SECRET_KEY", "server-secret-that-must-not-leak")

    session = launch(user, make_workspace())

    state = session.provisioner_state
    directory = Path(state["dir"])
    assert directory.is_relative_to(desktops.resolve())
    assert oct(directory.stat().st_mode & 0o777) == "0o700"
    for name in ("rfbauth", "Xauthority"):
        assert oct((directory / name).stat().st_mode & 0o777) == "0o600"
    assert (directory / "rfbauth").read_bytes() == vnc_password_file(session.rfb_password)
    assert len(session.rfb_password) == 8
    assert session.upstream_kind == "tcp"
    assert session.upstream_target == f"127.0.0.1:{state['port']}"
    members = group_members(state["pgid"])
    assert sorted(command for command, _, _ in members.values()) == ["Xvfb", "x11vnc", "xterm"]
    for _command, cmdline, environ in members.values():
        assert session.rfb_password.encode() not in cmdline
        assert b"server-secret-that-must-not-leak" not in environ
        assert b"WORKGATE_ENCRYPTION_KEY" not in environ and b"DATABASE_URL" not in environ


def test_the_password_file_is_what_x11vnc_itself_writes(tmp_path):
    path = tmp_path / "passwd"
    subprocess.run(
        ["x11vnc", "-storepasswd", "Zq3x9Ab1", str(path)], check=True, capture_output=True
    )

    assert vnc_password_file("Zq3x9Ab1") == path.read_bytes()


@pytest.mark.django_db(transaction=True)
def test_another_process_stops_the_desktop_from_the_database_alone(
    desktops, make_workspace, launch, user
):
    session = launch(user, make_workspace())
    pgid, directory = session.provisioner_state["pgid"], Path(session.provisioner_state["dir"])
    assert group_members(pgid)
    db_settings = connection.settings_dict
    script = (
        "import django; django.setup()\n"
        "from sessions_app.models import WorkspaceSession\n"
        "from sessions_app.provisioners import provisioner_named\n"
        f"session = WorkspaceSession.objects.get(pk='{session.pk}')\n"
        "provisioner_named(session.provisioner).stop(session)\n"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": (
            f"postgres://{db_settings['USER'] or 'postgres'}@{db_settings['HOST'] or '127.0.0.1'}"
            f":{db_settings['PORT'] or 5432}/{db_settings['NAME']}"
        ),
        "WORKGATE_RUNTIME_DIR": str(desktops),
        "PYTHONPATH": str(ROOT),
    }

    subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, check=True, timeout=60)

    assert group_members(pgid) == {}
    assert not directory.exists()


@pytest.mark.django_db
def test_desktops_orphaned_by_a_crash_are_cleaned_up_at_the_next_start(
    desktops, make_workspace, launch, user
):
    orphan = launch(user, make_workspace())
    # The server died before it could stop the desktop, and the session ended meanwhile.
    WorkspaceSession.objects.filter(pk=orphan.pk).update(status="terminated")
    pgid, directory = orphan.provisioner_state["pgid"], Path(orphan.provisioner_state["dir"])
    assert group_members(pgid)

    fresh = launch(user, make_workspace())

    assert group_members(pgid) == {}
    assert not directory.exists()
    assert group_members(fresh.provisioner_state["pgid"])


@pytest.mark.django_db
def test_stopping_a_session_ends_its_desktop(
    desktops, make_workspace, launch, api, user, django_capture_on_commit_callbacks
):
    session = launch(user, make_workspace())
    pgid, directory = session.provisioner_state["pgid"], Path(session.provisioner_state["dir"])

    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"/api/workspaces/{session.workspace_id}/stop")

    assert response.status_code == 200
    assert group_members(pgid) == {}
    assert not directory.exists()


@pytest.mark.django_db(transaction=True)
async def test_the_desktop_outlives_its_viewers_and_is_shared(desktop, ticket_for, user):
    async def viewer():
        body = await db(ticket_for)(user, desktop.runtime_id)
        communicator = relay_communicator(relay_path(body))
        await communicator.connect(timeout=10)
        rfb = RfbClient(CommunicatorConnection(communicator))
        return communicator, await rfb.handshake(body["vncPassword"])

    first, first_init = await viewer()
    second, second_init = await viewer()  # shared: the first stays connected
    await first.disconnect()
    third, third_init = await viewer()  # a reconnect after a viewer left
    rectangles = await RfbClient(CommunicatorConnection(second)).framebuffer_update(*GEOMETRY)
    await second.disconnect()
    await third.disconnect()

    assert (first_init.width, first_init.height) == GEOMETRY
    assert second_init == third_init == first_init
    assert rectangles >= 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("WORKGATE_LOCAL_DESKTOP", False, "WORKGATE_LOCAL_DESKTOP=1"),
        ("WORKGATE_LOCAL_DESKTOP_GEOMETRY", "huge", "WORKGATE_LOCAL_DESKTOP_GEOMETRY"),
        ("WORKGATE_LOCAL_DESKTOP_COMMAND", "no-such-program-here", "no-such-program-here"),
    ],
)
def test_a_desktop_that_cannot_start_here_says_what_to_set(
    desktops, make_workspace, api, settings, setting, value, message
):
    setattr(settings, setting, value)

    response = api.post(f"/api/workspaces/{make_workspace().id}/launch")

    assert response.status_code == 503
    assert response.json()["code"] == "provisioner_unavailable"
    assert message in response.json()["detail"]
    assert not WorkspaceSession.objects.filter(status__in=WorkspaceSession.LIVE).exists()


@pytest.mark.django_db
def test_without_xvfb_and_x11vnc_the_message_says_what_to_install(
    desktops, make_workspace, api, monkeypatch, tmp_path
):
    monkeypatch.setenv("PATH", str(tmp_path))

    response = api.post(f"/api/workspaces/{make_workspace().id}/launch")

    assert response.status_code == 503
    assert "apt-get install xvfb x11vnc" in response.json()["detail"]
