"""Daphne as the documents start it listens with a backlog that holds a burst of connections:
Twisted's default of 50 drops SYNs past it, and those clients wait a second for their retry."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.support import processes
from tests.support.processes import PYTHON, ROOT, free_port, running

pytestmark = pytest.mark.integration

BACKLOG = 2048


def documented_unit() -> list[str]:
    text = (ROOT / "docs" / "deployment.md").read_text()
    [command] = re.findall(r"^ExecStart=(\S+/daphne .*)$", text, flags=re.MULTILINE)
    return shlex.split(command)[1:]  # after the daphne executable


def make_run() -> list[str]:
    text = (ROOT / "Makefile").read_text()
    [command] = re.findall(r"^\tDEBUG=1 \$\(VENV\)/bin/daphne (.*)$", text, flags=re.MULTILINE)
    return shlex.split(command)


def listen_backlog(port: int) -> int:
    """The listening socket's backlog as the kernel holds it (ss's Send-Q for a listener)."""
    shown = subprocess.run(
        ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout.split()
    return int(shown[2])


@pytest.mark.parametrize("started_by", [documented_unit, make_run], ids=["systemd", "make-run"])
def test_daphne_as_documented_listens_with_a_backlog_for_a_burst(started_by, tmp_path):
    port = free_port()
    arguments = [
        argument.replace("%i", str(port)).replace("port=8000", f"port={port}")
        for argument in started_by()
    ]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": processes.test_database_url(),
    }

    with running([PYTHON, "-m", "daphne", *arguments], port=port, env=env, cwd=ROOT):
        backlog = listen_backlog(port)

    somaxconn = int((Path("/proc/sys/net/core/somaxconn")).read_text())
    assert backlog == min(BACKLOG, somaxconn)
