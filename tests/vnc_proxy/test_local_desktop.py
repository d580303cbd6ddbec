"""The local_desktop provisioner with real Xvfb, x11vnc and xterm: private secrets, a process
group any process can stop, desktops that outlive their viewers, and orphans cleaned up."""

from __future__ import annotations

import dataclasses
import errno
import os
import secrets
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

from sessions_app.models import WorkspaceSession
from sessions_app.provisioners import local_desktop
from sessions_app.provisioners.local_desktop import vnc_password_file
from tests.support.desktops import GEOMETRY, desktop_processes, needs_desktops
from tests.support.processes import ROOT, wait_for
from tests.support.rfb import RfbClient
from tests.vnc_proxy.conftest import CommunicatorConnection, db, relay_communicator, relay_path

pytestmark = [pytest.mark.integration, needs_desktops]


def in_sessions(sessions: set[int]) -> list[int]:
    """Live processes in any of these sessions, found without the desktop's own mark lookup."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_bytes()
            except OSError:
                continue
            fields = stat[stat.rfind(b")") + 2 :].split()
            if fields[0] != b"Z" and int(fields[3]) in sessions:
                found.append(int(entry))
    return found


def processes_running(argv: list[str]) -> list[int]:
    wanted = "\0".join(argv).encode() + b"\0"
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if Path(f"/proc/{entry}/cmdline").read_bytes() == wanted:
                    found.append(int(entry))
            except OSError:
                continue
    return found


@pytest.mark.django_db
def test_a_desktop_runs_outside_the_servers_session_with_its_secrets_in_private_files(
    desktops, make_workspace, launch, user, settings, monkeypatch
):
    settings.WORKGATE_LOCAL_DESKTOP_COMMAND = "xterm -geometry 80x24"
    monkeypatch.setenv("SECRET_KEY", "server-secret-that-must-not-leak")

    session = launch(user, make_workspace())

    state = session.provisioner_state
    directory = Path(state["dir"])
    # The program starts under its subreaper, just after the desktop is ready.
    wait_for(lambda: "xterm" in {p["command"] for p in desktop_processes(directory).values()})
    assert directory.is_relative_to(desktops.resolve())
    home, servers = directory / "home", directory / "servers"
    assert oct(directory.stat().st_mode & 0o777) == "0o711"  # the gateway's: notes and logs
    for folder, names in ((home, ["Xauthority"]), (servers, ["Xauthority", "rfbauth"])):
        assert oct(folder.stat().st_mode & 0o777) == "0o700"
        assert sorted(path.name for path in folder.iterdir()) == names
        for name in names:
            assert oct((folder / name).stat().st_mode & 0o777) == "0o600"
            assert (folder / name).stat().st_uid == folder.stat().st_uid != os.geteuid()
    assert home.stat().st_uid != servers.stat().st_uid  # the program cannot trace its servers
    for name in ("sessions", "desktop.log", "x11vnc.log", "xvfb.log"):
        assert (directory / name).stat().st_uid == os.geteuid()
    assert (servers / "rfbauth").read_bytes() == vnc_password_file(session.rfb_password)
    assert len(session.rfb_password) == 8
    assert session.upstream_kind == "tcp"
    assert session.upstream_target == f"127.0.0.1:{state['port']}"
    processes = desktop_processes(directory)
    assert {"Xvfb", "x11vnc", "xterm"} <= {process["command"] for process in processes.values()}
    for pid, process in processes.items():
        # Not in the server's session or group, and no controlling terminal to reach.
        assert process["session"] != os.getsid(0)
        assert os.getpgid(pid) != os.getpgid(0)
        if process["command"] in {"Xvfb", "x11vnc", "xterm"}:
            # What the gateway started; the shell inside xterm has xterm's terminal, rightly.
            assert process["tty"] == 0
        assert session.rfb_password.encode() not in process["cmdline"]
        assert b"server-secret-that-must-not-leak" not in process["environ"]
        assert b"WORKGATE_ENCRYPTION_KEY" not in process["environ"]
        assert b"DATABASE_URL" not in process["environ"]


def test_the_password_file_is_what_x11vnc_itself_writes(tmp_path):
    path = tmp_path / "passwd"
    subprocess.run(
        ["x11vnc", "-storepasswd", "Zq3x9Ab1", str(path)], check=True, capture_output=True
    )

    assert vnc_password_file("Zq3x9Ab1") == path.read_bytes()


def session_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_bytes()
    return int(stat[stat.rfind(b")") + 2 :].split()[3])


@pytest.mark.django_db
@pytest.mark.parametrize(
    "escape",
    [
        "env -i {} & exit 0",  # no environment, so not the desktop's mark
        "setsid -f env -i {}; exit 0",  # and a session of its own, its parent gone at once
    ],
    ids=["scrubbed", "scrubbed-and-setsid"],
)
def test_a_child_that_hid_is_stopped_after_its_program_exited(
    desktops,
    settings,
    make_workspace,
    launch,
    api,
    user,
    django_capture_on_commit_callbacks,
    escape,
):
    """The program starts a child that drops the desktop's mark (an empty environment), or
    also leaves for a session and process group of its own, and exits: the child is still
    found, as a descendant of the program's subreaper."""
    straggler = ["sleep", f"{600 + secrets.randbelow(10**6) / 10**6:.6f}"]  # this test's own
    settings.WORKGATE_LOCAL_DESKTOP_COMMAND = f"sh -c '{escape.format(' '.join(straggler))}'"
    try:
        session = launch(user, make_workspace())
        directory = Path(session.provisioner_state["dir"])
        [pid] = wait_for(lambda: processes_running(straggler))
        wait_for(lambda: "sh" not in {p["command"] for p in desktop_processes(directory).values()})
        assert pid not in desktop_processes(directory)  # no mark
        [(leader, _started)] = local_desktop._noted_leaders(directory)
        if "setsid" in escape:
            assert session_of(pid) not in (session_of(leader), leader)

        with django_capture_on_commit_callbacks(execute=True):
            response = api.post(f"/api/workspaces/{session.workspace_id}/stop")

        assert response.status_code == 200
        assert processes_running(straggler) == []
        assert desktop_processes(directory) == {}
        assert not directory.exists()
    finally:
        for leftover in processes_running(straggler):
            os.kill(leftover, signal.SIGKILL)


# The desktop program of the next test: it starts a helper that makes itself non-dumpable (as
# ssh-agent does: its environment, with the desktop's mark, can then be read by root alone) and
# takes a process group of its own, then exits. It writes the helper's pid in its working
# directory, the desktop's home.
UNDUMPABLE_PROGRAM = """
import ctypes, os, time
if os.fork() == 0:
    ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE: 0
    os.setpgid(0, 0)
    with open("helper.pid.new", "w") as note:
        note.write(str(os.getpid()))
    os.rename("helper.pid.new", "helper.pid")
    time.sleep(600)
    os._exit(0)
"""
# The machine's own Python: the desktop's uid may not reach the venv's interpreter (a clone in
# a folder closed to others), and the program needs nothing but the standard library.
SYSTEM_PYTHON = "/usr/bin/python3"


@pytest.mark.needs_programs(SYSTEM_PYTHON)
@pytest.mark.django_db
def test_a_child_that_made_itself_undumpable_is_stopped_too(
    desktops, settings, make_workspace, launch, api, user, django_capture_on_commit_callbacks
):
    settings.WORKGATE_LOCAL_DESKTOP_COMMAND = shlex.join(
        [SYSTEM_PYTHON, "-I", "-c", UNDUMPABLE_PROGRAM]
    )
    session = launch(user, make_workspace())
    note = Path(session.provisioner_state["dir"]) / "home" / "helper.pid"
    helper = int(wait_for(lambda: note.exists() and note.read_text()))
    try:
        assert local_desktop._stat(helper) is not None

        with django_capture_on_commit_callbacks(execute=True):
            response = api.post(f"/api/workspaces/{session.workspace_id}/stop")

        assert response.status_code == 200
        assert local_desktop._stat(helper) is None
    finally:
        if local_desktop._stat(helper) is not None:
            os.kill(helper, signal.SIGKILL)


@pytest.mark.django_db(transaction=True)
def test_another_process_stops_the_desktop_from_the_database_alone(
    desktops, make_workspace, launch, user
):
    session = launch(user, make_workspace())
    directory = Path(session.provisioner_state["dir"])
    sessions = {process["session"] for process in desktop_processes(directory).values()}
    assert in_sessions(sessions)
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

    assert desktop_processes(directory) == {}
    assert in_sessions(sessions) == []
    assert not directory.exists()


@pytest.mark.django_db
def test_desktops_orphaned_by_a_crash_are_cleaned_up_at_the_next_start(
    desktops, make_workspace, launch, user
):
    orphan = launch(user, make_workspace())
    # The server died before it could stop the desktop, and the session ended meanwhile.
    WorkspaceSession.objects.filter(pk=orphan.pk).update(status="terminated")
    directory = Path(orphan.provisioner_state["dir"])
    assert desktop_processes(directory)

    fresh = launch(user, make_workspace())

    assert desktop_processes(directory) == {}
    assert not directory.exists()
    assert desktop_processes(fresh.provisioner_state["dir"])


@pytest.mark.django_db
def test_stopping_a_session_ends_its_desktop(
    desktops, make_workspace, launch, api, user, django_capture_on_commit_callbacks
):
    session = launch(user, make_workspace())
    directory = Path(session.provisioner_state["dir"])
    sessions = {process["session"] for process in desktop_processes(directory).values()}
    assert len(sessions) >= 2 and in_sessions(sessions)  # Xvfb and x11vnc at least

    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"/api/workspaces/{session.workspace_id}/stop")

    assert response.status_code == 200
    assert desktop_processes(directory) == {}
    assert in_sessions(sessions) == []
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


def test_a_noted_leader_counts_only_while_it_lives_in_this_boot(tmp_path):
    """The notes can be stale (the leader exited and its number was handed to someone else, or
    the machine rebooted) or garbage: then they name nobody, and never pid 0 or 1."""
    leader = subprocess.Popen(["sleep", "600"], start_new_session=True)
    try:
        started = local_desktop._stat(leader.pid).started
        boot = local_desktop._boot_id()

        def members(text: str) -> list[int]:
            (tmp_path / local_desktop.SESSIONS_FILE).write_text(text)
            return [member.pid for member in local_desktop._desktop_members(tmp_path)]

        assert members(f"boot {boot}\n{leader.pid} {started}\n") == [leader.pid]
        assert members(f"boot {boot}\n{leader.pid} {started + 1}\n") == []  # recycled
        assert members(f"boot another-boot\n{leader.pid} {started}\n") == []
        assert members(f"boot {boot}\n{leader.pid} {started}") == []  # half-written
        assert members(f"boot {boot}\n0 0\n1 1\nx y\n\xff\n1 2 3\n") == []
        assert members("") == []
    finally:
        leader.kill()
        leader.wait()


# A process that holds SIGUSR1 blocked: a signal sent to it stays pending, where /proc shows it
# as soon as the sender's call returns (so what was not sent can be asserted without waiting).
BLOCKS_USR1 = "import signal, time; signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1}); "


def _usr1_in(pid: int, *masks: str) -> bool:
    """Whether SIGUSR1 is in any of the /proc/<pid>/status masks named (SigBlk:, SigPnd:, ...)."""
    found = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(masks):
            found |= int(line.split()[1], 16)
    return bool(found & (1 << (signal.SIGUSR1 - 1)))


def _usr1_pending(pid: int) -> bool:
    return _usr1_in(pid, "SigPnd:", "ShdPnd:")


@pytest.mark.parametrize("pidfd", ["pidfd", "no pidfd"])
def test_a_signal_reaches_only_the_process_the_scan_found_and_its_group(
    tmp_path, monkeypatch, pidfd
):
    """A number whose start time no longer matches the scan's (recycled in between) is never
    signalled; the process the scan found is, and with it the rest of its group. Where the
    kernel refuses pidfd_open (before Linux 5.3, or a seccomp filter), the same holds."""
    if pidfd == "no pidfd":

        def refused(pid, flags=0):
            raise OSError(errno.ENOSYS, "Function not implemented")

        monkeypatch.setattr(local_desktop.os, "pidfd_open", refused)
    child_code = BLOCKS_USR1 + "time.sleep(600)"
    leader_code = (
        BLOCKS_USR1 + "import subprocess, sys; "
        f"child = subprocess.Popen([sys.executable, '-c', {child_code!r}]); "
        "print(child.pid, flush=True); child.wait()"
    )
    leader = subprocess.Popen(
        [sys.executable, "-c", leader_code], stdout=subprocess.PIPE, start_new_session=True
    )
    try:
        child = int(leader.stdout.readline())
        deadline = time.monotonic() + 10
        while not _usr1_in(child, "SigBlk:"):  # the child has not reached its sigmask yet
            assert time.monotonic() < deadline
            time.sleep(0.01)
        scanned = local_desktop._stat(leader.pid)
        recycled = dataclasses.replace(scanned, started=scanned.started + 1)

        local_desktop._signal(recycled, signal.SIGUSR1, set())
        assert not _usr1_pending(leader.pid) and not _usr1_pending(child)

        local_desktop._signal(scanned, signal.SIGUSR1, set())
        assert _usr1_pending(leader.pid) and _usr1_pending(child)
    finally:
        os.killpg(leader.pid, signal.SIGKILL)
        leader.wait()
        leader.stdout.close()


@pytest.fixture
def squatter():
    """A process of another kind on a loopback port, greeting every connection as a VNC
    server would: what a local account could start on the port chosen for x11vnc."""
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def greet():
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.sendall(b"RFB 003.008\n")

    thread = threading.Thread(target=greet, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(5)
    listener.close()


@pytest.mark.django_db
def test_a_process_that_took_the_port_first_is_not_taken_for_the_desktop(
    desktops, make_workspace, launch, user, squatter, monkeypatch
):
    """The port was free when chosen and taken before x11vnc could bind it: the greeting on it
    is not x11vnc's, so the launch tries another port instead of relaying to the squatter."""
    free_port = local_desktop._free_port
    ports = iter([squatter])
    monkeypatch.setattr(local_desktop, "_free_port", lambda: next(ports, None) or free_port())

    session = launch(user, make_workspace())

    port = int(session.upstream_target.rpartition(":")[2])
    assert port != squatter
    processes = desktop_processes(session.provisioner_state["dir"])
    [x11vnc] = [pid for pid, process in processes.items() if process["command"] == "x11vnc"]
    assert local_desktop._listens(x11vnc, port)
    assert not local_desktop._listens(x11vnc, squatter)


@pytest.mark.django_db
@pytest.mark.parametrize("whose", ["another account's", "a link"])
def test_a_runtime_root_that_is_not_the_gateways_own_is_refused(
    desktops, make_workspace, api, tmp_path, whose
):
    """Under a shared WORKGATE_RUNTIME_DIR another local account may have made the folder
    first: the launch is refused before any desktop file is written or process started."""
    root = local_desktop._runtime_root()
    root.parent.mkdir(parents=True)
    if whose == "a link":
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir(mode=0o700)
        root.symlink_to(elsewhere)
        inside = elsewhere
    elif os.geteuid() != 0:
        pytest.skip("giving a folder to another account needs root")
    else:
        root.mkdir(mode=0o700)
        os.chown(root, 65534, 65534)
        inside = root

    response = api.post(f"/api/workspaces/{make_workspace().id}/launch")

    assert response.status_code == 503
    assert response.json() == {
        "success": False,
        "detail": "The local desktops' runtime directory is not private to the gateway's user: "
        "see WORKGATE_RUNTIME_DIR and the server log.",
        "code": "provisioner_unavailable",
    }
    assert list(inside.iterdir()) == []
    assert not WorkspaceSession.objects.filter(status__in=WorkspaceSession.LIVE).exists()


@pytest.mark.django_db
def test_the_gateways_own_runtime_folders_left_open_are_closed_to_others(
    desktops, make_workspace, launch, user
):
    """An older release made the folder above the root with the umask's mode (0775 under
    umask 002): the next launch closes both to others (the root may still be passed through,
    never listed: a desktop reaches its own home by name) and goes ahead."""
    root = local_desktop._runtime_root()
    root.mkdir(parents=True)
    root.parent.chmod(0o777)
    root.chmod(0o755)

    session = launch(user, make_workspace())

    assert session.status == WorkspaceSession.Status.READY
    assert root.parent.stat().st_mode & 0o777 == 0o755
    assert root.stat().st_mode & 0o777 == 0o711
