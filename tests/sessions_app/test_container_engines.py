"""Container desktops where no engine can take them: none configured, none answering, or one
the gateway would reach without TLS. (Launches on a real engine: test_containers.py.)"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from audit.models import AuditEntry
from sessions_app.models import WorkspaceSession
from sessions_app.provisioners import container
from sessions_app.provisioners.container import nano_cpus, size_bytes
from tests.support.processes import ROOT, import_fresh
from workspaces.defaults import insert_default_workspaces
from workspaces.models import Workspace

pytestmark = pytest.mark.django_db


@pytest.fixture
def defaults():
    insert_default_workspaces()


def refused_launch(api, workspace_id: str):
    response = api.post(f"/api/workspaces/{workspace_id}/launch")
    assert response.status_code == 503, response.content
    # Nothing half-done: no session, the workspace as it was, one refusal in the log.
    assert not WorkspaceSession.objects.exists()
    assert Workspace.objects.get(pk=workspace_id).status == "available"
    entry = AuditEntry.objects.get(action="launch_workspace")
    assert (entry.success, entry.resource) == (False, f"workspace:{workspace_id}")
    assert entry.details["refused"] == "provisioner_unavailable"
    return response.json()


def test_without_an_engine_the_secure_browser_names_the_setting(defaults, api, settings):
    settings.WORKGATE_CONTAINER_ENGINES = []

    body = refused_launch(api, "ws-secure-browser")

    assert body["code"] == "provisioner_unavailable"
    assert "WORKGATE_CONTAINER_ENGINES" in body["detail"]


def test_an_engine_that_is_down_makes_the_launch_a_503(defaults, api, settings, tmp_path):
    settings.WORKGATE_CONTAINER_ENGINES = [f"unix://{tmp_path}/no-engine-here.sock"]

    body = refused_launch(api, "ws-secure-browser")

    assert body["code"] == "provisioner_unavailable"
    assert "No container engine is answering" in body["detail"]


def start_server(**environment: str):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PYTHONPATH": str(ROOT),
        **environment,
    }
    return import_fresh("config.asgi", env)


def test_the_server_refuses_an_engine_reached_without_tls(tmp_path):
    started = start_server(
        WORKGATE_CONTAINER_ENGINES="tcp://127.0.0.1:2375", WORKGATE_CONTAINER_NETWORK="desktops"
    )

    assert started.returncode != 0
    assert "needs TLS client certificates" in started.stderr
    assert "WORKGATE_CONTAINER_TLS_DIR" in started.stderr


def test_the_server_refuses_another_hosts_engine_without_a_network_its_desktops_join():
    started = start_server(WORKGATE_CONTAINER_ENGINES="tcp://desktops-1.internal:2376")

    assert started.returncode != 0
    assert "set WORKGATE_CONTAINER_NETWORK" in started.stderr


def test_the_server_refuses_a_tls_folder_without_the_certificates(tmp_path):
    (tmp_path / "ca.pem").write_text("not really")

    started = start_server(
        WORKGATE_CONTAINER_ENGINES="tcp://127.0.0.1:2376",
        WORKGATE_CONTAINER_TLS_DIR=str(tmp_path),
        WORKGATE_CONTAINER_NETWORK="desktops",
    )

    assert started.returncode != 0
    assert "missing" in started.stderr and "cert.pem" in started.stderr


@pytest.mark.parametrize(
    ("cpu", "expected"), [("2 vCPU", 2 * 10**9), ("0.5 vCPU", 5 * 10**8), ("16 vCPU", 16 * 10**9)]
)
def test_cpus_become_the_engines_billionths(cpu, expected):
    assert nano_cpus(cpu) == expected


@pytest.mark.parametrize(
    ("size", "expected"), [("4 GB", 4 * 2**30), ("512 MB", 512 * 2**20), ("1.5 TB", 3 * 2**39)]
)
def test_sizes_are_binary_units_as_engines_count_memory(size, expected):
    assert size_bytes(size) == expected


def test_a_kasm_image_is_reached_as_kasmvnc_serves_it():
    """Kasm's published images serve KasmVNC's wss on 6901 with Basic auth (kasm_user and the
    VNC_PW they were started with), under a certificate of their own making. (No Kasm image is
    run here: none can be pulled on this machine.)"""
    workspace = Workspace(container_protocol="kasmvnc", container_port=6901)

    upstream = container._upstream(workspace, "10.89.3.2:6901", "session-password-24-chars")

    assert (upstream.kind, upstream.target) == ("websocket", "wss://10.89.3.2:6901/websockify")
    assert (upstream.username, upstream.secret) == ("kasm_user", "session-password-24-chars")
    assert upstream.tls_verify is False and upstream.rfb_password == ""


def deployment_label(**environment: str) -> str:
    """WORKGATE_CONTAINER_DEPLOYMENT as a server started with `environment` reads it."""
    code = "from django.conf import settings; print(settings.WORKGATE_CONTAINER_DEPLOYMENT)"
    env = {
        **{k: v for k, v in os.environ.items() if k != "WORKGATE_CONTAINER_DEPLOYMENT"},
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        **environment,
    }
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_two_deployments_left_at_the_default_label_their_containers_apart():
    """Each would take the other's desktops for orphans under one shared label."""
    production = deployment_label(DATABASE_URL="postgres://gw@db-1:5432/workgate")
    staging = deployment_label(DATABASE_URL="postgres://gw@db-1:5432/workgate_staging")

    assert production.startswith("workgate-") and staging.startswith("workgate-")
    assert production != staging
    # Every gateway of one deployment shares its database, so its label (a password aside).
    assert deployment_label(DATABASE_URL="postgres://gw:secret@db-1:5432/workgate") == production
    assert deployment_label(WORKGATE_CONTAINER_DEPLOYMENT="desk-prod") == "desk-prod"
