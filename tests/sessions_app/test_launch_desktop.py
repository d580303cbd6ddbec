"""Launching a desktop behind a real VNC server (Xvfb + x11vnc): the session records where the
relay connects and the desktop's RFB password, encrypted, and tells the client none of it."""

from __future__ import annotations

import os
import subprocess

import pytest
from django.db import connection

from sessions_app.models import WorkspaceSession
from tests.support.desktops import needs_desktops
from tests.support.processes import free_port, running
from tests.support.sessions import launch

pytestmark = [pytest.mark.django_db, needs_desktops]


@pytest.fixture(scope="module")
def vnc_server():
    """An x11vnc on loopback serving a fresh Xvfb display; yields its port."""
    read_fd, write_fd = os.pipe()
    with running(
        ["Xvfb", "-displayfd", write_fd, "-screen", "0", "640x480x24", "-nolisten", "tcp"],
        pass_fds=[write_fd],
        stderr=subprocess.DEVNULL,
    ):
        os.close(write_fd)
        with os.fdopen(read_fd) as display_pipe:
            display = display_pipe.readline().strip()
        port = free_port()
        argv = ["x11vnc", "-display", f":{display}", "-rfbport", port, "-localhost"]
        argv += ["-nopw", "-forever", "-shared", "-quiet"]
        with running(argv, port=port, stderr=subprocess.DEVNULL):
            yield port


def test_a_static_desktop_is_ready_once_its_vnc_server_greets(api, make_workspace, vnc_server):
    workspace = make_workspace(
        type="linux",
        connection_type="vnc",
        vnc_target=f"tcp://127.0.0.1:{vnc_server}",
        rfb_password="desk-rfb-7",
    )

    response = launch(api, workspace.id)

    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "ready"
    assert body["security"]["no_open_ports"] is True
    assert str(vnc_server) not in response.content.decode()
    session = WorkspaceSession.objects.get(pk=body["session_id"])
    assert session.upstream_kind == "tcp"
    assert session.upstream_target == f"127.0.0.1:{vnc_server}"
    assert session.rfb_password == "desk-rfb-7"
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT rfb_password FROM sessions_app_workspacesession WHERE id = %s", [session.pk]
        )
        assert "desk-rfb-7" not in cursor.fetchone()[0]
    detail = api.get(f"/api/sessions/{session.id}").json()
    assert "upstream_target" not in detail and "rfb_password" not in detail
