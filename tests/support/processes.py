"""Real servers for tests: started in fixtures, stopped by their own pid, on loopback only."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[2]
PYTHON = ROOT / ".venv" / "bin" / "python"


def import_fresh(module: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Import `module` in a new interpreter of this one, with exactly `env`: how the project
    loads at start-up (its settings, its ASGI application) under a given configuration."""
    return subprocess.run(
        [sys.executable, "-c", f"import {module}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def missing_programs(*programs: str) -> list[str]:
    """Which of `programs` (names, or absolute paths) this machine does not have; a name is
    looked for on PATH and in the sbin folders, where Debian puts nginx."""
    path = os.pathsep.join([os.environ.get("PATH", os.defpath), "/usr/sbin", "/sbin"])
    return [program for program in programs if shutil.which(program, path=path) is None]


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 20.0, proc=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


def wait_for(condition, seconds: float = 10.0):
    """Poll until `condition()` is truthy (a process starting or exiting), at most `seconds`."""
    deadline = time.monotonic() + seconds
    while not (result := condition()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
    return result


def stop(proc: subprocess.Popen, timeout: float = 5.0) -> None:
    """Stop the process and everything in its process group, by its own pid."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout)
    else:
        # The leader is gone; make sure nothing it started lingers.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


@contextlib.contextmanager
def running(
    argv, *, port: int | None = None, env=None, cwd=None, timeout=20.0, **kwargs
) -> Iterator[subprocess.Popen]:
    """Run `argv` in its own process group for the duration of the block."""
    proc = subprocess.Popen(
        [str(part) for part in argv],
        env=env,
        cwd=cwd,
        start_new_session=True,
        **kwargs,
    )
    try:
        if port is not None:
            wait_for_port(port, timeout=timeout, proc=proc)
        yield proc
    finally:
        stop(proc)


def daphne_pid(port: int) -> int:
    """The pid of the Daphne that `daphne()` below started on `port`."""
    endpoint = f"tcp:port={port}:".encode()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry}/cmdline", "rb") as handle:
                argv = handle.read().split(b"\0")
                if b"daphne" in b" ".join(argv) and any(arg.startswith(endpoint) for arg in argv):
                    return int(entry)
    raise AssertionError(f"no daphne on {port}")


def rss_mib(pid: int) -> float:
    """The resident memory of process `pid`, in MiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def test_database_url() -> str:
    """pytest-django's test database as a DATABASE_URL, for server processes the tests start."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    auth = quote(db.get("USER") or "", safe="")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"], safe="")
    return (
        f"postgres://{auth}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"
    )


@contextlib.contextmanager
def daphne(
    log_path: Path, *, timeout: float = 60.0, port: int | None = None, **environment: str
) -> Iterator[int]:
    """A Daphne process serving the whole app from the test database; yields its port (a free
    one unless `port` is given: a setting may have to name it, as the apps domain does).

    Its output goes to `log_path`, and the tail of it into the error if it does not start
    (the timeout is generous: the suite may share a busy machine).
    """
    port = port or free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": test_database_url(),
        **environment,
    }
    # As production starts it (docs/deployment.md): a backlog that holds a burst.
    endpoint = f"tcp:port={port}:interface=127.0.0.1:backlog=2048"
    argv = [PYTHON, "-m", "daphne", "-e", endpoint, "config.asgi:application"]
    with open(log_path, "ab") as log, contextlib.ExitStack() as stack:
        try:
            stack.enter_context(
                running(argv, port=port, env=env, cwd=ROOT, stdout=log, stderr=log, timeout=timeout)
            )
        except (RuntimeError, TimeoutError) as exc:
            tail = Path(log_path).read_text(errors="replace")[-3000:]
            raise RuntimeError(f"daphne did not start: {tail}") from exc
        yield port
