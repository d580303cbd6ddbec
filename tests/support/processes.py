"""Real servers for tests: started in fixtures, stopped by their own pid, on loopback only."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYTHON = ROOT / ".venv" / "bin" / "python"


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
