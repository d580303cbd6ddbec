"""GET /api/workspaces and /api/workspaces/{id}: the catalog and its five defaults."""

from __future__ import annotations

import pytest

from workspaces.models import Workspace

pytestmark = pytest.mark.django_db

PUBLIC_FIELDS = {
    "id",
    "name",
    "type",
    "description",
    "image_url",
    "status",
    "cpu",
    "memory",
    "storage",
    "url",
    "connection_type",
    "requires_netbird",
    "icon",
}


def test_an_empty_catalog_is_filled_with_the_five_defaults_in_order(api):
    response = api.get("/api/workspaces")

    assert response.status_code == 200
    body = response.json()
    assert isinstance(body, list)
    assert [item["id"] for item in body] == [
        "ws-sap-neogenesys",
        "ws-remote-desktop",
        "ws-1panel-admin",
        "ws-linux-desktop",
        "ws-secure-browser",
    ]
    assert [item["name"] for item in body] == [
        "SAP Neogénesys",
        "Remote Desktop",
        "1Panel Admin",
        "Linux Desktop",
        "Secure Browser",
    ]
    assert [item["type"] for item in body] == ["html5", "rdp", "web", "linux", "browser"]
    assert Workspace.objects.count() == 5


def test_the_sap_default_matches_the_documented_example(api):
    sap = api.get("/api/workspaces").json()[0]

    assert sap == {
        "id": "ws-sap-neogenesys",
        "name": "SAP Neogénesys",
        "type": "html5",
        "description": "TSPlus HTML5 Desktop para acceso a SAP. Requiere conexión NetBird activa.",
        "image_url": "https://images.unsplash.com/photo-1551288049-bebda4e38f71?w=400",
        "status": "available",
        "cpu": "4 vCPU",
        "memory": "8 GB",
        "storage": "100 GB",
        "url": "http://tsplus.intranet.neosc/",
        "connection_type": "html5",
        "requires_netbird": True,
        "icon": "sap",
    }


def test_the_remote_desktop_connects_over_html5_and_the_linux_desktop_over_vnc(api):
    by_id = {item["id"]: item for item in api.get("/api/workspaces").json()}

    assert by_id["ws-remote-desktop"]["connection_type"] == "html5"
    assert by_id["ws-linux-desktop"]["connection_type"] == "vnc"


@pytest.mark.parametrize(
    ("engines", "local_desktops", "linux_desktop"),
    [
        (["unix:///run/podman/podman.sock"], True, "container"),
        ([], False, "container"),  # production without an engine: 503 naming the setting
        ([], True, "local_desktop"),  # the embedded default (make run)
    ],
)
def test_the_linux_desktop_is_a_container_per_session_wherever_an_engine_is_set(
    admin_api, settings, engines, local_desktops, linux_desktop
):
    settings.WORKGATE_CONTAINER_ENGINES = engines
    settings.WORKGATE_LOCAL_DESKTOP = local_desktops

    by_id = {item["id"]: item for item in admin_api.get("/api/workspaces").json()}

    assert by_id["ws-linux-desktop"]["provisioner"] == linux_desktop
    assert by_id["ws-linux-desktop"]["container_image"] == "localhost/workgate-desktop:latest"
    browser = by_id["ws-secure-browser"]
    assert (browser["provisioner"], browser["container_image"]) == (
        "container",
        "localhost/workgate-browser:latest",
    )
    assert browser["container_capabilities"] == ["SYS_CHROOT"]
    assert browser["requires_netbird"] is False  # reached through the relay only


def test_a_catalog_with_workspaces_is_not_refilled(api):
    Workspace.objects.create(id="ws-abcdef01", name="Only", type="web", description="One.")

    body = api.get("/api/workspaces").json()

    assert [item["id"] for item in body] == ["ws-abcdef01"]


def test_users_see_only_the_public_fields(api):
    for item in api.get("/api/workspaces").json():
        assert set(item) == PUBLIC_FIELDS


def test_administrators_also_see_how_desktops_are_reached_but_never_the_secrets(admin_api):
    Workspace.objects.create(
        id="ws-0000beef",
        name="Kasm",
        type="linux",
        description="A KasmVNC host.",
        connection_type="vnc",
        vnc_target="wss://kasm.internal:6901/websockify",
        vnc_username="kasm_user",
        vnc_secret="basic-auth-secret-1",
        rfb_password="rfb-secret-1",
    )

    item = admin_api.get("/api/workspaces/ws-0000beef").json()

    assert item["vnc_target"] == "wss://kasm.internal:6901/websockify"
    assert item["vnc_username"] == "kasm_user"
    assert item["vnc_secret_set"] is True
    assert item["rfb_password_set"] is True
    assert "vnc_secret" not in item and "rfb_password" not in item
    assert item["provisioner"] == "static"


def test_one_workspace_by_id(api):
    api.get("/api/workspaces")

    response = api.get("/api/workspaces/ws-linux-desktop")

    assert response.status_code == 200
    assert response.json()["name"] == "Linux Desktop"


def test_a_default_asked_for_by_id_on_a_new_install_is_found(api):
    """Nobody has listed the catalog yet: a client launching the Linux desktop by its id (as
    api.md's examples do) finds it, and the catalog holds the five defaults."""
    response = api.get("/api/workspaces/ws-linux-desktop")

    assert response.status_code == 200
    assert response.json()["name"] == "Linux Desktop"
    assert Workspace.objects.count() == 5


def test_an_unknown_workspace_is_404(api):
    response = api.get("/api/workspaces/ws-deadbeef")

    assert response.status_code == 404
    assert response.json() == {
        "success": False,
        "detail": "Workspace not found",
        "code": "not_found",
    }


@pytest.mark.parametrize("path", ["/api/workspaces", "/api/workspaces/ws-sap-neogenesys"])
def test_the_catalog_needs_a_signed_in_user(anon, path):
    assert anon.get(path).status_code == 401
    assert not Workspace.objects.exists()


def test_search_matches_every_word_in_names_descriptions_and_types(user):
    from workspaces.selectors import workspace_search

    assert [w.id for w in workspace_search("linux", user=user)] == ["ws-linux-desktop"]
    assert [w.id for w in workspace_search("SAP tsplus", user=user)] == ["ws-sap-neogenesys"]
    assert {w.id for w in workspace_search("html5", user=user)} == {
        "ws-sap-neogenesys",
        "ws-remote-desktop",
    }
    assert workspace_search("", user=user).count() == 5
    assert not workspace_search("nothing-like-this", user=user).exists()
