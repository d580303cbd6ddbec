"""Xvfb + x11vnc on loopback, one desktop per session, for a single trusted host.

A desktop never runs as the gateway's own OS user, nor as root: Xvfb, x11vnc and the desktop
program run as a uid and gid of their own, taken from the subordinate ids (/etc/subuid,
/etc/subgid) of a dedicated account (WORKGATE_LOCAL_DESKTOP_USER), with no supplementary groups.
So a desktop's user cannot read the server's environment (its keys), its private files, or
another desktop's processes and files. Giving processes other ids needs root: a gateway that is
not root has no local desktops, and one with local desktops on and DEBUG off refuses to start
without them (refuse_unsafe_configuration).

Each desktop lives in a directory under WORKGATE_RUNTIME_DIR that is the gateway's (0711: its
notes and logs, 0600, are out of the desktop's reach), holding `home` (0700, the program's uid:
its HOME and working directory, with the X authority cookie) and `servers` (0700, a second uid
that Xvfb and x11vnc run as, so the program cannot trace them: the cookie and the RFB password
file). Every file is 0600, and no secret is ever on a command line, where any local user could
read it with ps. The processes name those files relative to their working directory, so they
find them even where the runtime directory lies below a folder closed to others. Xvfb, x11vnc
and the desktop program each start in a session of their own, outside the server's: nothing on
the desktop shares the server's process group or can reach its controlling terminal (under
`make run`, the developer's). The directory is kept in the session's `provisioner_state`, so
any server process on this host can stop what another one started.

Stopping a desktop finds its processes two ways. Every process of a desktop carries
WORKGATE_DESKTOP_DIR=<its directory> in its environment, and its children inherit it. And the
desktop program runs under subreaper.py, a child subreaper that outlives everything the program
started: whatever the program leaves behind is re-parented to it, not to init, so every process
the program ever started stays its descendant, whatever it does to its environment, session or
process group. The leader's pid and start time (and the boot) are noted in the directory, and
its descendants are found by their parent links in /proc. A noted leader counts only while it is
alive with the noted start time, so a pid the kernel handed to someone else is never touched.
Stopping signals the process group of every process found, and each such process on its own;
only groups with a found process in them are signalled. (What a desktop asks another service to
start for it, such as a cron or at job, is that service's child, not the desktop's: local
desktops are for a single trusted host.)
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import logging
import os
import pwd
import re
import secrets
import select
import shlex
import shutil
import signal
import socket
import stat
import string
import struct
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection

from core.exceptions import Forbidden
from sessions_app.models import WorkspaceSession
from sessions_app.provisioners.base import ProvisionerUnavailable, Upstream
from sessions_app.provisioners.static import rfb_greets

logger = logging.getLogger(__name__)

MARK = "WORKGATE_DESKTOP_DIR"
START_TIMEOUT = 15.0  # seconds for Xvfb to take connections and x11vnc to greet
STOP_TIMEOUT = 5.0  # seconds between SIGTERM and SIGKILL
PORT_ATTEMPTS = 3  # a free port can be taken between choosing it and x11vnc binding it
RFB_PASSWORD_LENGTH = 8  # VNC authentication uses the first 8 bytes of the password, no more
_PASSWORD_ALPHABET = string.ascii_letters + string.digits
_GEOMETRY = re.compile(r"^(\d{2,5})x(\d{2,5})$")
HOME = "home"  # the desktop's own folder inside its directory
SERVERS = "servers"  # its X and VNC servers' folder, out of the program's reach
XAUTHORITY = "Xauthority"  # in the desktop's home
RFBAUTH = "rfbauth"
SUBUID_FILE = Path("/etc/subuid")
SUBGID_FILE = Path("/etc/subgid")

# Only these variables of the server's environment reach a desktop: the server's own secrets
# (SECRET_KEY, WORKGATE_ENCRYPTION_KEY, DATABASE_URL, API keys) must not be readable from a
# shell the end user opens on it. HOME, USER and LOGNAME are the desktop's own.
_INHERITED_ENV = ("PATH", "SHELL", "LANG", "LC_ALL", "TZ")

# VNC's "obfuscation" of stored passwords: DES with this fixed key (d3des bit order, i.e. the
# standard-DES key e84ad660c4721ae0). It hides nothing from a reader of the file, hence 0600.
_VNC_FILE_KEY = bytes([0xE8, 0x4A, 0xD6, 0x60, 0xC4, 0x72, 0x1A, 0xE0])


@dataclass(frozen=True)
class Geometry:
    width: int
    height: int

    def __str__(self) -> str:
        return f"{self.width}x{self.height}"


class LocalDesktopProvisioner:
    name = "local_desktop"

    def check_available(self, workspace=None) -> None:
        _configuration()

    def start(self, session) -> Upstream:
        geometry, command, ids = _configuration()
        reap_orphans()
        directory, user = _desktop_dir(session.id, ids)
        try:
            return _start_desktop(session, directory, user, geometry, command)
        except BaseException:
            _stop_desktop_in(directory)
            raise

    def probe(self, session) -> bool:
        return bool(session.upstream_target) and rfb_greets(session.upstream_target)

    def stop(self, session) -> None:
        # The directory follows from the session id alone: a stop that races the start (before
        # provisioner_state was saved) still finds the desktop, and no path read back from the
        # database is ever deleted on its word.
        directory = _runtime_root() / str(session.id)
        if directory.exists() or str(directory) in _marked_processes():
            _stop_desktop_in(directory)


# --- Configuration -----------------------------------------------------------------------------


def _configuration() -> tuple[Geometry, list[str], DesktopIds]:
    """The desktop's geometry, command and ids, or ProvisionerUnavailable saying what to fix."""
    if not settings.WORKGATE_LOCAL_DESKTOP:
        raise ProvisionerUnavailable(
            "Local desktops are turned off on this server: set WORKGATE_LOCAL_DESKTOP=1 "
            "(DEBUG=1 turns them on too), or give the workspace a static vnc_target."
        )
    missing = [binary for binary in ("Xvfb", "x11vnc") if shutil.which(binary) is None]
    if missing:
        raise ProvisionerUnavailable(
            f"Local desktops need {' and '.join(missing)} on the server's PATH: install the "
            "packages xvfb and x11vnc (apt-get install xvfb x11vnc)."
        )
    match = _GEOMETRY.match(settings.WORKGATE_LOCAL_DESKTOP_GEOMETRY.strip())
    if not match:
        raise ProvisionerUnavailable(
            "WORKGATE_LOCAL_DESKTOP_GEOMETRY must look like 1280x800, not "
            f"{settings.WORKGATE_LOCAL_DESKTOP_GEOMETRY!r}."
        )
    try:
        command = shlex.split(settings.WORKGATE_LOCAL_DESKTOP_COMMAND)
    except ValueError as exc:
        raise ProvisionerUnavailable(
            f"WORKGATE_LOCAL_DESKTOP_COMMAND cannot be parsed: {exc}."
        ) from exc
    if command and shutil.which(command[0]) is None:
        raise ProvisionerUnavailable(
            f"WORKGATE_LOCAL_DESKTOP_COMMAND names {command[0]!r}, which is not installed "
            "(the default, xterm, comes with apt-get install xterm)."
        )
    return Geometry(int(match[1]), int(match[2])), command, desktop_ids()


# --- Who a desktop runs as ---------------------------------------------------------------------


@dataclass(frozen=True)
class DesktopIds:
    """The account local desktops run as, and the subordinate ids it owns."""

    account: str
    uids: range
    gids: range


@dataclass(frozen=True)
class DesktopUser:
    """The ids one desktop runs as: its own, held by no other desktop while it lives. Its X and
    VNC servers run as a second pair (`server_*`), so the program cannot trace them (and through
    them run anything without no_new_privs, or outside the subreaper)."""

    account: str
    uid: int
    gid: int
    server_uid: int
    server_gid: int


def desktop_ids() -> DesktopIds:
    """The ids local desktops may run as, or ProvisionerUnavailable saying what to fix.

    Never root's and never the gateway's: the account must not be root, and its subordinate
    ranges must hold neither 0 nor the gateway's own ids."""
    name = settings.WORKGATE_LOCAL_DESKTOP_USER
    if os.geteuid() != 0:
        raise ProvisionerUnavailable(
            "Local desktops run under ids of their own, never the gateway's, and only a gateway "
            "running as root can give them those: run it as root, or use container or static "
            "desktops."
        )
    try:
        account = pwd.getpwnam(name)
    except KeyError:
        raise ProvisionerUnavailable(
            f"Local desktops run as the account {name!r} (WORKGATE_LOCAL_DESKTOP_USER), which "
            "does not exist: create it with scripts/desktop-account.sh (make run does)."
        ) from None
    gateway = {0, os.getuid(), os.getgid()}
    refused = ProvisionerUnavailable(
        f"The account {name!r} (WORKGATE_LOCAL_DESKTOP_USER) and its subordinate ids must be "
        "neither root's nor the gateway's own."
    )
    if account.pw_uid in gateway:
        raise refused
    uids = _subordinate_ids(SUBUID_FILE, account)
    gids = _subordinate_ids(SUBGID_FILE, account)
    if uids is None or gids is None:
        raise ProvisionerUnavailable(
            f"The account {name!r} has no subordinate ids in {SUBUID_FILE} and {SUBGID_FILE} for "
            "local desktops to run as: give it some with scripts/desktop-account.sh."
        )
    if any(own in uids or own in gids for own in gateway):
        raise refused
    return DesktopIds(account=name, uids=uids, gids=gids)


def _subordinate_ids(path: Path, account: pwd.struct_passwd) -> range | None:
    """The first range `path` (subuid(5) format: owner:start:count) gives the account."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        owner, _, rest = line.strip().partition(":")
        start, _, count = rest.partition(":")
        owned = owner in (account.pw_name, str(account.pw_uid))
        if owned and start.isdigit() and count.isdigit() and int(count) > 0:
            return range(int(start), int(start) + int(count))
    return None


def refuse_unsafe_configuration() -> None:
    """Called as the server starts: with local desktops on and DEBUG off, a server that cannot
    run them under ids of their own does not start (with DEBUG on, a launch says what to fix)."""
    if settings.WORKGATE_LOCAL_DESKTOP and not settings.DEBUG:
        try:
            desktop_ids()
        except ProvisionerUnavailable as exc:
            raise ImproperlyConfigured(f"WORKGATE_LOCAL_DESKTOP is on, but: {exc}") from exc


def refusal_for(user, *, provisioner: str) -> Forbidden | None:
    """A local desktop is a shell on the gateway's own host: launched and connected to by
    superusers only, unless the administrator chose WORKGATE_LOCAL_DESKTOP_HOST_SHELL_FOR_EVERYONE.
    The 403 for anyone else (a desktop of another provisioner: None)."""
    if provisioner != LocalDesktopProvisioner.name:
        return None
    if user.is_superuser or settings.WORKGATE_LOCAL_DESKTOP_HOST_SHELL_FOR_EVERYONE:
        return None
    return Forbidden(
        "This desktop runs on the gateway's own host, which this server keeps for superusers.",
        "superusers_only",
    )


# Where any uid may leave files or IPC objects behind that outlive its processes.
_SHARED_WRITABLE = ("/tmp", "/var/tmp", "/dev/shm")  # noqa: S108 - scanned, never written
_SYSV_IPC = ("/proc/sysvipc/shm", "/proc/sysvipc/msg", "/proc/sysvipc/sem")


def _claim_user(root: Path, ids: DesktopIds) -> DesktopUser:
    """Two uids (and their gids) of `ids` that nothing holds: no live process, no desktop under
    `root`, and nothing left in the host's shared folders or SysV IPC by an earlier desktop, so
    no one finds what the previous holder of an id left behind. The caller holds the root's
    lock, so two launches never claim the same."""
    taken = set()
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):  # gone meanwhile
                taken.add(entry.stat().st_uid)
    for folder in root.glob("*/*"):
        with contextlib.suppress(OSError):
            taken.add(folder.lstat().st_uid)
    for shared in _SHARED_WRITABLE:
        with contextlib.suppress(OSError), os.scandir(shared) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    taken.add(entry.stat(follow_symlinks=False).st_uid)
    for table in _SYSV_IPC:
        with contextlib.suppress(OSError, ValueError, IndexError):
            header, *rows = Path(table).read_text().splitlines()
            column = header.split().index("uid")
            taken.update(int(row.split()[column]) for row in rows)
    free = [(uid, gid) for uid, gid in zip(ids.uids, ids.gids, strict=False) if uid not in taken]
    if len(free) < 2:
        raise ProvisionerUnavailable(
            "Every id local desktops may run as is in use: stop a desktop."
        )
    (uid, gid), (server_uid, server_gid) = free[:2]
    return DesktopUser(ids.account, uid, gid, server_uid, server_gid)


def _runtime_root() -> Path:
    """This installation's desktops: one folder per database, so two Workgate servers sharing a
    runtime directory but not a database never take each other's desktops for orphans."""
    db = connection.settings_dict
    identity = f"{db['ENGINE']}|{db.get('HOST', '')}|{db.get('PORT', '')}|{db['NAME']}"
    digest = hashlib.sha256(identity.encode()).hexdigest()[:12]
    return Path(settings.WORKGATE_RUNTIME_DIR).resolve() / "desktops" / digest


def _private_root() -> Path:
    """The runtime root, made if need be, and refused unless it and the folder above it are
    real folders of the gateway's user: under a shared WORKGATE_RUNTIME_DIR (/tmp, say) another
    local account could have made either first, and read or swap the desktops' passwords
    inside. Our own folders are closed to others if they were not (an older release made the
    one above with the umask's mode)."""
    root = _runtime_root()
    root.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    root.mkdir(mode=0o711, exist_ok=True)
    # Others may pass through the root (a desktop reaches its own home by name), never list it.
    for directory, closed_to_others in ((root.parent, 0o022), (root, 0o066)):
        info = directory.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
            logger.error(
                "%s must be a directory (not a link) of the gateway's user, uid %s.",
                directory,
                os.geteuid(),
            )
            raise ProvisionerUnavailable(
                "The local desktops' runtime directory is not private to the gateway's user: "
                "see WORKGATE_RUNTIME_DIR and the server log."
            )
        if info.st_mode & closed_to_others:
            os.chmod(directory, stat.S_IMODE(info.st_mode) & ~closed_to_others)
    return root


def _desktop_dir(session_id, ids: DesktopIds) -> tuple[Path, DesktopUser]:
    """The session's directory, made afresh, with its home given to ids of its own."""
    root = _private_root()
    directory = root / str(session_id)
    if directory.exists():  # a leftover of an earlier attempt at this very session
        _stop_desktop_in(directory)
    lock = os.open(root / ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # held until the home is the claimed uid's
        user = _claim_user(root, ids)
        directory.mkdir(mode=0o711)
        # mkdir's mode is filtered by the umask. Others may pass through, never list or write:
        # the desktop reaches its home by name, and its notes and logs are the gateway's.
        os.chmod(directory, 0o711)  # noqa: S103
        for name, uid, gid in (
            (HOME, user.uid, user.gid),
            (SERVERS, user.server_uid, user.server_gid),
        ):
            (directory / name).mkdir(mode=0o700)
            os.chmod(directory / name, 0o700)
            os.chown(directory / name, uid, gid)
    finally:
        os.close(lock)
    return directory, user


# --- Starting ----------------------------------------------------------------------------------


def _start_desktop(
    session, directory: Path, user: DesktopUser, geometry: Geometry, command: list[str]
) -> Upstream:
    password = new_rfb_password()
    cookie = xauthority_cookie(secrets.token_bytes(16))
    # Written before any of the desktop's processes runs, then given to their uids: the servers
    # read the cookie and the VNC password; the program, the cookie only.
    for folder, name, content, uid, gid in (
        (SERVERS, XAUTHORITY, cookie, user.server_uid, user.server_gid),
        (SERVERS, RFBAUTH, vnc_password_file(password), user.server_uid, user.server_gid),
        (HOME, XAUTHORITY, cookie, user.uid, user.gid),
    ):
        _write_private(directory / folder / name, content)
        os.chown(directory / folder / name, uid, gid)
    env = _desktop_env(directory, user)
    deadline = time.monotonic() + START_TIMEOUT

    display = _start_xvfb(directory, user, geometry, env, deadline)
    state = {"dir": str(directory), "display": display}
    _remember(session, state)  # from here on, any process can find and stop this desktop

    port = _start_x11vnc(directory, user, display, env, deadline)
    state["port"] = port
    if command:
        _spawn(
            command,  # the operator's own setting
            directory=directory,
            user=user,
            log="desktop.log",
            env={**env, "DISPLAY": f":{display}"},
            supervised=True,
        )
    _remember(session, state)
    # _start_x11vnc returned only once the VNC server greeted: the desktop is ready.
    return Upstream(kind="tcp", target=f"127.0.0.1:{port}", rfb_password=password, ready=True)


def _remember(session, state: dict) -> None:
    session.provisioner_state = dict(state)
    type(session).objects.filter(pk=session.pk).update(provisioner_state=session.provisioner_state)


def _desktop_env(directory: Path, user: DesktopUser) -> dict[str, str]:
    env = {name: os.environ[name] for name in _INHERITED_ENV if name in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    home = directory / HOME
    env.update(HOME=str(home), USER=user.account, LOGNAME=user.account)
    # By full name where the desktop's uid can walk down to it; otherwise (the runtime directory
    # below a folder closed to others) relative to the working directory, which is its home.
    env["XAUTHORITY"] = str(home / XAUTHORITY) if _walkable_by_others(home) else XAUTHORITY
    env[MARK] = str(directory)
    return env


def _walkable_by_others(path: Path) -> bool:
    return all(parent.stat().st_mode & stat.S_IXOTH for parent in path.parents)


SESSIONS_FILE = "sessions"  # "boot <boot id>", then "<leader pid> <start time>" per line
SUBREAPER = Path(__file__).with_name("subreaper.py")


@functools.cache  # the same for as long as this process lives
def _boot_id() -> str:
    with contextlib.suppress(OSError):
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    return ""


def _spawn(
    argv: list,
    *,
    directory: Path,
    user: DesktopUser,
    log: str,
    env: dict,
    pass_fds=(),
    supervised=False,
):
    """Start one of the desktop's servers (Xvfb, x11vnc) as `user`'s server ids in their
    folder, or with `supervised` its program, in a session of its own, its output in `log` (the
    gateway's file, out of the desktop's reach).

    `supervised`: run it under subreaper.py, which drops to `user`'s ids itself before it starts
    the program in its home, and note that session in the desktop's directory (see the module's
    docstring)."""
    if supervised:
        argv = [sys.executable, "-I", str(SUBREAPER), str(user.uid), str(user.gid), *argv]
        as_user, cwd = {}, directory / HOME
    else:  # one of its servers
        as_user = {"user": user.server_uid, "group": user.server_gid, "extra_groups": []}
        cwd = directory / SERVERS
    with open(directory / log, "ab") as out:
        process = subprocess.Popen(  # noqa: S603 - fixed argv, or the operator's own command
            argv,
            env=env,
            cwd=cwd,  # entered before the ids change: no need to walk down to it
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            pass_fds=pass_fds,
            start_new_session=True,
            **as_user,
        )
    if supervised:
        # Noted before another thread's _reap_children() could reap it; the subreaper outlives
        # its program's descendants, so the entry stays true while anything is in the session.
        leader = _stat(process.pid, zombie=True)
        if leader is not None:
            note = f"boot {_boot_id()}\n{process.pid} {leader.started}\n"
            _write_private(directory / SESSIONS_FILE, note.encode())
    with _children_lock:
        _children.append(process)
    return process


def _start_xvfb(directory, user, geometry, env, deadline) -> int:
    """Xvfb picks a free display itself and writes its number to a pipe once it takes clients."""
    read_end, write_end = os.pipe()
    try:
        _spawn(
            [
                shutil.which("Xvfb"),
                "-displayfd",
                str(write_end),
                "-screen",
                "0",
                f"{geometry}x24",
                "-auth",
                XAUTHORITY,  # in its working directory, its home
                "-nolisten",
                "tcp",
                "-noreset",
            ],
            directory=directory,
            user=user,
            log="xvfb.log",
            env=env,
            pass_fds=(write_end,),
        )
        os.close(write_end)
        write_end = -1
        answer = b""
        while not answer.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([read_end], [], [], remaining)[0]:
                raise ProvisionerUnavailable("The local desktop's X server did not start in time.")
            chunk = os.read(read_end, 32)
            if not chunk:
                raise ProvisionerUnavailable(
                    f"The local desktop's X server exited ({_tail(directory / 'xvfb.log')})."
                )
            answer += chunk
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
    return int(answer.strip())


def _start_x11vnc(directory, user, display, env, deadline) -> int:
    for _attempt in range(PORT_ATTEMPTS):
        port = _free_port()
        x11vnc = _spawn(
            [
                shutil.which("x11vnc"),
                "-display",
                f":{display}",
                "-auth",
                XAUTHORITY,
                "-rfbauth",  # the password is in a file, never on the command line
                RFBAUTH,
                "-rfbport",
                str(port),
                "-localhost",
                "-no6",
                # The desktop outlives its viewers: it takes reconnects and shares the screen
                # between viewers of the same session.
                "-forever",
                "-shared",
                "-norc",
                "-nolookup",
            ],
            directory=directory,
            user=user,
            log="x11vnc.log",
            env=env,
        )
        while time.monotonic() < deadline:
            if x11vnc.poll() is not None:
                break  # most likely the port was taken meanwhile: try another
            if rfb_greets(f"127.0.0.1:{port}", timeout=1.0) and _listens(x11vnc.pid, port):
                return port
            time.sleep(0.05)
        else:
            raise ProvisionerUnavailable("The local desktop's VNC server did not start in time.")
    raise ProvisionerUnavailable(
        f"The local desktop's VNC server would not start ({_tail(directory / 'x11vnc.log')})."
    )


def _listens(pid: int, port: int) -> bool:
    """Whether process `pid` holds the socket listening on TCP `port`: the greeting came from
    x11vnc, not from a process that took the port between _free_port and x11vnc's bind (x11vnc
    then fails, and the next attempt takes another port)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
        with open(f"/proc/{pid}/net/tcp") as table:
            rows = [line.split() for line in table.readlines()[1:]]
    except OSError:
        return False
    held = set()
    for fd in fds:
        with contextlib.suppress(OSError):  # closed since the listing
            held.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
    listen = "0A"  # TCP_LISTEN in /proc/net/tcp's `st` column
    return any(
        row[3] == listen
        and int(row[1].rpartition(":")[2], 16) == port
        and f"socket:[{row[9]}]" in held
        for row in rows
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(path: Path, limit: int = 200) -> str:
    with contextlib.suppress(OSError):
        lines = path.read_text(errors="replace").strip().splitlines()
        if lines:
            return lines[-1][-limit:]
    return "no output"


def _write_private(path: Path, content: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(content)


def new_rfb_password() -> str:
    return "".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(RFB_PASSWORD_LENGTH))


def vnc_password_file(password: str) -> bytes:
    """The 8 bytes of a VNC `passwd` file (what `vncpasswd` and `x11vnc -storepasswd` write)."""
    padded = password.encode("latin-1")[:8].ljust(8, b"\0")
    # Three equal DES keys make TripleDES plain single DES, which is what VNC uses.
    encryptor = Cipher(TripleDES(_VNC_FILE_KEY * 3), modes.ECB()).encryptor()  # noqa: S305
    return encryptor.update(padded) + encryptor.finalize()


def xauthority_cookie(cookie: bytes) -> bytes:
    """An Xauthority file with one MIT-MAGIC-COOKIE-1 entry valid for any host and display."""

    def counted(value: bytes) -> bytes:
        return struct.pack(">H", len(value)) + value

    family_wild = 0xFFFF
    return (
        struct.pack(">H", family_wild)
        + counted(b"")
        + counted(b"")
        + counted(b"MIT-MAGIC-COOKIE-1")
        + counted(cookie)
    )


# --- Stopping and orphans ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Process:
    pid: int
    group: int
    session: int
    started: int  # clock ticks after boot: with the pid, names one process for good
    parent: int = 0
    mark: str | None = None  # its WORKGATE_DESKTOP_DIR, if it carries one


def _stat(pid: int, mark: str | None = None, *, zombie: bool = False) -> _Process | None:
    """The process `pid` as /proc/<pid>/stat describes it; None if gone, or a zombie unless
    `zombie` (a child that exited but is not yet waited for still holds its pid)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return None
    # Fields after the parenthesised command name: state, ppid, pgrp, session, ... starttime is
    # the 22nd field of the whole line, the 20th after the name.
    fields = stat[stat.rfind(b")") + 2 :].split()
    if fields[0] == b"Z" and not zombie:
        return None
    return _Process(pid, int(fields[2]), int(fields[3]), int(fields[19]), int(fields[1]), mark)


def _processes() -> dict[int, _Process]:
    """Every live (not zombie) process, with its desktop mark if this server may read it.

    A process whose environment cannot be read (another user's, or one of ours that made itself
    non-dumpable, as ssh-agent does) is still listed, without a mark: the parent links of every
    process are what finds a desktop's descendants."""
    found = {}
    needle = f"{MARK}=".encode()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            with open(f"/proc/{pid}/environ", "rb") as handle:
                environ = handle.read()
        except OSError:  # gone meanwhile (then _stat finds nothing), or not ours to read
            environ = b""
        mark = None
        if needle in environ:
            for variable in environ.split(b"\0"):
                if variable.startswith(needle):
                    mark = variable[len(needle) :].decode(errors="replace")
                    break
        process = _stat(pid, mark)
        if process is not None:
            found[pid] = process
    return found


def _marked_processes() -> dict[str, list[tuple[int, int]]]:
    """Every live process carrying the desktop mark: {directory: [(pid, pgid)]}."""
    found: dict[str, list[tuple[int, int]]] = {}
    for process in _processes().values():
        if process.mark is not None:
            found.setdefault(process.mark, []).append((process.pid, process.group))
    return found


def _noted_leaders(directory: Path) -> list[tuple[int, int]]:
    """The (leader pid, start time) noted in the desktop's directory in this boot; anything
    unreadable, from another boot or naming no real process (pid 0 or 1) is ignored."""
    try:
        # Only the gateway's own notes, in its own folder: never a file a desktop could have
        # written or linked (a desktop's home is its own to write).
        if directory.lstat().st_uid != os.geteuid():
            return []
        fd = os.open(directory / SESSIONS_FILE, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return []
    with os.fdopen(fd, "rb") as notes:
        info = os.fstat(notes.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
            return []
        text = notes.read().decode(errors="replace")
    lines = text.split("\n")[:-1]  # a last line without its newline may be half-written
    if not lines or lines[0] != f"boot {_boot_id()}":
        return []
    noted = []
    for line in lines[1:]:
        with contextlib.suppress(ValueError):
            leader, started = (int(field) for field in line.split())
            if leader > 1:
                noted.append((leader, started))
    return noted


def _desktop_members(directory: Path) -> list[_Process]:
    """The desktop's live processes: those carrying its mark, and every descendant of a noted
    leader that is alive with the noted start time (only then is the pid still that leader's)."""
    processes = _processes()
    children: dict[int, list[int]] = {}
    for process in processes.values():
        children.setdefault(process.parent, []).append(process.pid)
    members = {pid for pid, process in processes.items() if process.mark == str(directory)}
    for leader, started in _noted_leaders(directory):
        current = _stat(leader, zombie=True)
        if current is not None and current.started == started:
            descendants = [leader]
            while descendants:
                pid = descendants.pop()
                members.add(pid)
                descendants.extend(children.get(pid, ()))
    return [processes[pid] for pid in members if pid in processes]


def _signal(process: _Process, sig: signal.Signals, groups_done: set[int]) -> None:
    """Signal `process` and the group it is in, only while it is still the process the scan
    found.

    A pid number is recycled once its process is reaped, so `kill(pid)` after a scan could hit a
    stranger. A pidfd names one process for good: it is opened first, then the start time read
    through /proc is compared with the scan's, and the signal goes through the pidfd. The group
    is signalled first (once per round, `groups_done`), while its checked member holds its
    number. Where the kernel has no pidfd (Linux before 5.3, or a seccomp filter refusing it),
    the same check is followed by a signal by number.
    """
    try:
        pidfd = os.pidfd_open(process.pid)
    except ProcessLookupError:  # gone since the scan
        return
    except OSError:
        pidfd = None
        _warn_no_pidfd()
    try:
        current = _stat(process.pid, zombie=True)
        if current is None or current.started != process.started:
            return
        with contextlib.suppress(ProcessLookupError):
            if current.group > 1 and current.group not in groups_done:
                groups_done.add(current.group)
                os.killpg(current.group, sig)
            if pidfd is None:
                os.kill(process.pid, sig)
            else:
                signal.pidfd_send_signal(pidfd, sig)
    finally:
        if pidfd is not None:
            os.close(pidfd)


@functools.cache
def _warn_no_pidfd() -> None:
    logger.warning(
        "this kernel refuses pidfd_open: local desktop processes are signalled by number"
    )


def _stop_desktop_in(directory: Path) -> None:
    """End every process of the desktop living in `directory`, then delete the directory.

    Each member is signalled, and with it its group (Xvfb, x11vnc and the desktop program each
    lead one; the program's own children are in its group unless they made their own), only
    while it is still the process the scan found (`_signal`).
    """
    members = _desktop_members(directory)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not members:
            break
        groups_done: set[int] = set()
        for member in members:
            with contextlib.suppress(PermissionError):
                _signal(member, sig, groups_done)
        deadline = time.monotonic() + STOP_TIMEOUT
        while members and time.monotonic() < deadline:
            time.sleep(0.05)
            _reap_children()
            members = _desktop_members(directory)
    _reap_children()
    if members:
        # The directory (with its notes) stays, so a later stop or orphan sweep tries again.
        logger.warning("local desktop processes in %s survived SIGKILL", directory)
        return
    shutil.rmtree(directory, ignore_errors=True)


# Desktop processes this server process started, until they have exited and been waited for:
# a stop from another process kills them, and this one still owes them a wait().
_children: list[subprocess.Popen] = []
_children_lock = threading.Lock()  # request threads start and reap concurrently


def _reap_children() -> None:
    with _children_lock:
        _children[:] = [child for child in _children if child.poll() is None]


def reap_orphans() -> int:
    """Stop desktops left behind by a crash: those whose session is no longer live here.

    Run at every start. A desktop whose session is still live is left alone, wherever it was
    started: after a server restart its viewers reconnect to it through any process.
    """
    root = _runtime_root()
    directories = set()
    if root.exists():
        directories = {str(path) for path in root.iterdir() if _desktop_dir_name(root, path)}
    # A mark is only a process's word: a desktop may give its processes any mark it likes, so
    # only a mark that names a desktop's own directory exactly, root/<session id>, counts.
    directories |= {d for d in _marked_processes() if _desktop_dir_name(root, Path(d))}
    if not directories:
        return 0
    ids = [uuid.UUID(Path(directory).name) for directory in directories]
    live = {
        str(root / str(session_id))
        for session_id in WorkspaceSession.objects.filter(
            id__in=ids, status__in=WorkspaceSession.LIVE
        ).values_list("id", flat=True)
    }
    orphans = sorted(directories - live)
    for directory in orphans:
        logger.info("stopping an orphaned local desktop: %s", directory)
        _stop_desktop_in(Path(directory))
    return len(orphans)


def _desktop_dir_name(root: Path, path: Path) -> bool:
    """Whether `path` is, as written, root/<a session id>: nothing below a desktop's home (which
    the desktop writes), nothing reached through a link or `..`."""
    try:
        return path.parent == root and str(uuid.UUID(path.name)) == path.name
    except ValueError:
        return False
