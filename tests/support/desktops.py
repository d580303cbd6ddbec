"""Real local desktops (Xvfb + x11vnc) in tests: the mark for a test that starts them, their
screen size, the processes a desktop is made of, and stopping whatever a test left running."""

from __future__ import annotations

from pathlib import Path

import pytest

from sessions_app.provisioners import local_desktop

needs_desktops = pytest.mark.needs_programs("Xvfb", "x11vnc")
GEOMETRY = (800, 600)


def stop_desktops_under(runtime: Path) -> None:
    root = str(runtime.resolve())
    for directory in local_desktop._marked_processes():
        if directory.startswith(root):
            local_desktop._stop_desktop_in(Path(directory))


def desktop_processes(directory) -> dict[int, dict]:
    """Live processes carrying a desktop's mark: {pid: command, cmdline, environ, session, tty}."""
    processes = {}
    for pid, _group in local_desktop._marked_processes().get(str(directory), []):
        try:
            stat = Path(f"/proc/{pid}/stat").read_bytes()
            fields = stat[stat.rfind(b")") + 2 :].split()
            processes[pid] = {
                "command": Path(f"/proc/{pid}/comm").read_text().strip(),
                "cmdline": Path(f"/proc/{pid}/cmdline").read_bytes(),
                "environ": Path(f"/proc/{pid}/environ").read_bytes(),
                "session": int(fields[3]),
                "tty": int(fields[4]),
            }
        except (OSError, IndexError):
            continue
    return processes
