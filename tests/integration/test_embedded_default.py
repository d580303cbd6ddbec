"""`make run`'s configuration, end to end: SQLite, in-memory layer, no services, a demo admin."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import httpx
import pytest

from tests.support.processes import PYTHON, ROOT, free_port, running

pytestmark = pytest.mark.integration

SOURCE = [
    "manage.py",
    "config",
    "accounts",
    "audit",
    "workspaces",
    "sessions_app",
    "vnc_proxy",
    "streaming",
    "socketio_server",
    "templates",
    "static",
]


@pytest.fixture
def project_copy(tmp_path):
    """A copy of the project, so its SQLite file and development key land in a scratch folder."""
    for name in SOURCE:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, tmp_path / name)
    return tmp_path


def embedded_env() -> dict:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("WORKGATE_", "DATABASE_URL", "REDIS_URL", "SECRET_KEY", "DJANGO_"))
    }
    env["DEBUG"] = "1"
    env["PYTHONPATH"] = ""
    return env


def test_the_embedded_default_boots_creates_a_demo_admin_and_answers(project_copy):
    env = embedded_env()
    manage = [str(PYTHON), "manage.py"]
    subprocess.run(
        [*manage, "migrate", "--noinput"],
        cwd=project_copy,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    created = subprocess.run(
        [*manage, "ensure_demo_admin"],
        cwd=project_copy,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    again = subprocess.run(
        [*manage, "ensure_demo_admin"],
        cwd=project_copy,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    email = re.search(r"email:\s+(\S+)", created.stdout).group(1)
    password = re.search(r"password:\s+(\S+)", created.stdout).group(1)
    assert again.stdout == ""  # the password is printed once, on first run only
    # Both the server's user's alone: a local desktop runs under another uid on this host.
    assert oct((project_copy / "db.sqlite3").stat().st_mode & 0o777) == "0o600"
    assert oct((project_copy / ".dev-secret-key").stat().st_mode & 0o777) == "0o600"

    port = free_port()
    daphne = [
        str(PYTHON),
        "-m",
        "daphne",
        "-b",
        "127.0.0.1",
        "-p",
        str(port),
        "config.asgi:application",
    ]
    with running(
        daphne,
        port=port,
        cwd=project_copy,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    ):
        base = f"http://127.0.0.1:{port}"
        docs = httpx.get(f"{base}/api/docs", timeout=10)
        signin = httpx.post(
            f"{base}/api/auth/signin", json={"email": email, "password": password}, timeout=10
        )
        me = httpx.get(
            f"{base}/api/auth/me", headers={"x-access-token": signin.json()["token"]}, timeout=10
        )

    assert docs.status_code == 200
    assert signin.status_code == 200
    assert me.json()["profile"] == {**me.json()["profile"], "email": email, "is_admin": True}
