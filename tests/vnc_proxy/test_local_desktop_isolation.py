"""Local desktops are shells on the gateway's own host, so who they run as and who may launch
them is the gateway's security: never the gateway's OS user nor root, each desktop under ids of
its own, superusers only unless an administrator opts in, and no server that would do less."""

from __future__ import annotations

import os
import pwd
import shlex
import subprocess
from pathlib import Path

import pytest

from audit.models import AuditEntry
from sessions_app.models import WorkspaceSession
from sessions_app.provisioners import local_desktop
from tests.support.desktops import desktop_processes, needs_desktops, stop_desktops_under
from tests.support.processes import ROOT, import_fresh, wait_for
from vnc_proxy.models import Ticket

pytestmark = [pytest.mark.integration, needs_desktops]

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="giving desktops ids needs root")


def uid_of(pid: int) -> int:
    return os.stat(f"/proc/{pid}").st_uid


def groups_of(pid: int) -> str:
    status = Path(f"/proc/{pid}/status").read_text()
    return next(line for line in status.splitlines() if line.startswith("Groups:"))


@needs_root
@pytest.mark.django_db
def test_a_desktop_runs_under_ids_of_its_own_and_cannot_read_the_server_or_another_desktop(
    desktops, settings, make_workspace, launch, user, make_user, monkeypatch
):
    """The tester's attack: a shell on the desktop types `id` and reads the server's
    environment. Here the server is this test process (the launch runs in it), holding a
    secret in its environment; the first desktop is another user's."""
    monkeypatch.setenv("SECRET_KEY", "server-secret-that-must-not-leak")
    ids = local_desktop.desktop_ids()
    other = launch(make_user(), make_workspace())
    [other_vnc] = [
        pid
        for pid, process in desktop_processes(other.provisioner_state["dir"]).items()
        if process["command"] == "x11vnc"
    ]
    probe = (
        "id -u; id -g; id -G; "
        f"cat /proc/{os.getpid()}/environ; "
        f"cat /proc/{other_vnc}/environ; "
        f"cat {other.provisioner_state['dir']}/servers/rfbauth; "
        # Its own servers run under other ids: no tracing them to run what no_new_privs forbids.
        'for d in /proc/[0-9]*; do [ "$(cat $d/comm 2>/dev/null)" = x11vnc ] && cat $d/environ; '
        "done; sudo -n true; echo done"
    )
    settings.WORKGATE_LOCAL_DESKTOP_COMMAND = shlex.join(["sh", "-c", probe])

    session = launch(user, make_workspace())

    directory = Path(session.provisioner_state["dir"])
    log = directory / "desktop.log"
    output = wait_for(lambda: log.exists() and "done" in log.read_text() and log.read_text())
    uid, gid, groups = (int(line) for line in output.splitlines()[:3])
    assert uid in ids.uids and gid in ids.gids
    assert groups == gid  # no supplementary groups: not root's, not the gateway's
    assert uid not in (0, os.geteuid())
    assert "server-secret-that-must-not-leak" not in output
    assert "Permission denied" in output
    assert output.count("Permission denied") >= 2  # the server's and the other desktop's
    assert other.rfb_password not in output
    assert "WORKGATE_DESKTOP_DIR=" not in output  # no x11vnc's environment, its own included
    servers = {
        uid_of(pid)
        for pid, process in desktop_processes(directory).items()
        if process["command"] in {"Xvfb", "x11vnc"}
    }
    assert len(servers) == 1 and servers <= set(ids.uids) and uid not in servers
    for pid in desktop_processes(directory):
        if uid_of(pid) != os.geteuid():  # all but the subreaper, the gateway's own
            assert groups_of(pid).split()[1:] == []  # no supplementary groups
    other_uids = {uid_of(pid) for pid in desktop_processes(other.provisioner_state["dir"])}
    assert other_uids and uid not in other_uids and 0 not in other_uids


@pytest.mark.django_db
@pytest.mark.parametrize("opted_in", [False, True])
def test_a_plain_user_launches_a_local_desktop_only_where_the_administrator_opted_in(
    desktops, settings, make_workspace, client_for, user, opted_in
):
    settings.WORKGATE_LOCAL_DESKTOP_HOST_SHELL_FOR_EVERYONE = opted_in
    workspace = make_workspace()

    response = client_for(user).post(f"/api/workspaces/{workspace.id}/launch")

    if opted_in:
        assert response.status_code == 201, response.content
        assert WorkspaceSession.objects.filter(user=user, status="ready").count() == 1
        return
    assert response.status_code == 403
    assert response.json() == {
        "success": False,
        "detail": "This desktop runs on the gateway's own host, which this server keeps for "
        "superusers.",
        "code": "superusers_only",
    }
    assert not WorkspaceSession.objects.exists()
    refusal = AuditEntry.objects.get(action="launch_workspace")
    assert refusal.success is False
    assert refusal.actor == user
    assert refusal.details == {"refused": "superusers_only", "status_code": 403}
    root = str(desktops.resolve())
    assert not [d for d in local_desktop._marked_processes() if d.startswith(root)]


@pytest.mark.django_db
def test_a_superuser_launches_a_local_desktop_without_the_opt_in(
    desktops, settings, make_workspace, client_for, make_user
):
    settings.WORKGATE_LOCAL_DESKTOP_HOST_SHELL_FOR_EVERYONE = False
    superuser = make_user(superuser=True)

    response = client_for(superuser).post(f"/api/workspaces/{make_workspace().id}/launch")

    assert response.status_code == 201, response.content
    assert WorkspaceSession.objects.get(user=superuser).status == "ready"


def start_server(**environment: str) -> subprocess.CompletedProcess:
    """Load the server's ASGI application as Daphne does, with these settings."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PYTHONPATH": str(ROOT),
        "DEBUG": "0",
        "WORKGATE_LOCAL_DESKTOP": "1",
        **environment,
    }
    return import_fresh("config.asgi", env)


@needs_root
@pytest.mark.parametrize(
    ("account", "says"),
    [
        ("no-such-account-here", "which does not exist"),
        ("root", "must be neither root's nor the gateway's own"),
        (pwd.getpwuid(65534).pw_name, "has no subordinate ids"),  # nobody
    ],
)
def test_the_server_refuses_to_start_when_local_desktops_would_not_run_under_ids_of_their_own(
    account, says
):
    started = start_server(WORKGATE_LOCAL_DESKTOP_USER=account)

    assert started.returncode != 0
    assert "ImproperlyConfigured: WORKGATE_LOCAL_DESKTOP is on, but:" in started.stderr
    assert says in started.stderr


@needs_root
def test_the_server_starts_with_local_desktops_under_their_own_account_or_in_debug():
    assert start_server().returncode == 0
    debug = start_server(DEBUG="1", WORKGATE_LOCAL_DESKTOP_USER="no-such-account-here")
    assert debug.returncode == 0, debug.stderr


@needs_root
@pytest.mark.django_db
def test_a_desktop_below_a_folder_closed_to_others_still_reaches_its_screen(
    desktops, settings, make_workspace, launch, user, tmp_path
):
    """A clone in /root or a 0700 home: the desktop's uid cannot walk down to its own files by
    name, yet Xvfb, x11vnc and the program find them (issue 25)."""
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    settings.WORKGATE_RUNTIME_DIR = closed / "runtime"
    settings.WORKGATE_LOCAL_DESKTOP_COMMAND = shlex.join(
        ["sh", "-c", "xterm -e true; echo opened the display: $?"]
    )

    try:
        session = launch(user, make_workspace())

        log = Path(session.provisioner_state["dir"]) / "desktop.log"
        assert Path(session.provisioner_state["dir"]).is_relative_to(closed)
        output = wait_for(lambda: log.exists() and "opened the display" in log.read_text() and log)
        assert "opened the display: 0" in output.read_text()
    finally:
        stop_desktops_under(closed / "runtime")


@needs_root
@pytest.mark.django_db
def test_a_desktop_cannot_name_another_process_for_the_orphan_sweep_to_kill(
    desktops, make_workspace, launch, user
):
    """The attack: in its own home the desktop writes notes naming a victim (the gateway
    itself, in the test that found it), marks a process of its own with that folder, and waits
    for the next launch's orphan sweep."""
    session = launch(user, make_workspace())
    home = Path(session.provisioner_state["dir"]) / "home"
    victim = subprocess.Popen(["sleep", "600"], start_new_session=True)
    forged = home / "evil"
    marked = None
    try:
        forged.mkdir()
        started = local_desktop._stat(victim.pid).started
        (forged / "sessions").write_text(
            f"boot {local_desktop._boot_id()}\n{victim.pid} {started}\n"
        )
        for path in (forged, forged / "sessions"):
            os.chown(path, home.stat().st_uid, home.stat().st_gid)
        marked = subprocess.Popen(
            ["sleep", "600"], env={"WORKGATE_DESKTOP_DIR": str(forged)}, start_new_session=True
        )
        wait_for(lambda: str(forged) in local_desktop._marked_processes())

        local_desktop.reap_orphans()
        launch(user, make_workspace())  # a launch sweeps too

        assert victim.poll() is None
        assert local_desktop._noted_leaders(forged) == []  # not the gateway's notes
    finally:
        for process in (victim, marked):
            if process is not None:
                process.kill()
                process.wait()


@pytest.mark.django_db
def test_an_account_no_longer_a_superuser_gets_no_ticket_to_its_local_desktop(
    desktops, settings, make_workspace, launch, make_user, client_for
):
    root = make_user(superuser=True)
    session = launch(root, make_workspace())
    settings.WORKGATE_LOCAL_DESKTOP_HOST_SHELL_FOR_EVERYONE = False
    root.is_superuser = False
    root.save(update_fields=["is_superuser"])

    response = client_for(root).post(
        "/api/agents/workspace/ticket", {"workspaceId": session.runtime_id}, format="json"
    )

    assert response.status_code == 403
    assert response.json()["code"] == "superusers_only"
    refusal = AuditEntry.objects.filter(action="ticket_issued").latest("id")
    assert refusal.success is False and refusal.actor == root
    assert not Ticket.objects.filter(session=session).exists()


@needs_root
@pytest.mark.django_db
def test_an_id_that_left_files_behind_is_not_given_to_the_next_desktop(
    desktops, make_workspace, launch, user
):
    """A desktop's files in /tmp outlive it; whoever got its uid next would own them."""
    root = local_desktop._private_root()
    would_get = local_desktop._claim_user(root, local_desktop.desktop_ids())
    leftover = Path("/tmp") / f"workgate-test-leftover-{os.getpid()}"  # noqa: S108
    leftover.write_text("the previous desktop's")
    try:
        os.chown(leftover, would_get.uid, would_get.gid)

        session = launch(user, make_workspace())

        directory = Path(session.provisioner_state["dir"])
        given = {(directory / name).stat().st_uid for name in ("home", "servers")}
        assert would_get.uid not in given
    finally:
        leftover.unlink()
