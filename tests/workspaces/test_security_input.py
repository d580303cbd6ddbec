"""Hostile input to the workspace routes: a bad id or URL is a 4xx in the one shape, never a 500."""

from __future__ import annotations

import pytest

from workspaces.models import Workspace

pytestmark = pytest.mark.django_db

NUL_ID = "ws%00x"


@pytest.mark.parametrize("method, path", [
    ("get", f"/api/workspaces/{NUL_ID}"),
    ("patch", f"/api/workspaces/{NUL_ID}"),
    ("put", f"/api/workspaces/{NUL_ID}"),
    ("delete", f"/api/workspaces/{NUL_ID}"),
    ("post", f"/api/workspaces/{NUL_ID}/launch"),
    ("post", f"/api/workspaces/{NUL_ID}/stop"),
])  # fmt: skip
def test_a_workspace_id_with_a_nul_byte_is_not_found(admin_api, method, path):
    response = getattr(admin_api, method)(path, {"name": "x"}, format="json")

    assert response.status_code == 404
    assert response.json() == {
        "success": False,
        "detail": "Workspace not found",
        "code": "not_found",
    }


@pytest.mark.parametrize("field, value", [
    ("url", "http://[::1"),
    ("image_url", "https://[fe80::1/x.png"),
    ("vnc_target", "tcp://[::1:5900"),
    ("vnc_target", "wss://[::1/websockify"),
])  # fmt: skip
def test_a_malformed_bracketed_host_is_a_400_naming_the_field(admin_api, field, value):
    body = {"name": "x", "type": "web", "description": "d", field: value}

    response = admin_api.post("/api/workspaces", body, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert field in response.json()["errors"]
    assert not Workspace.objects.filter(name="x").exists()
