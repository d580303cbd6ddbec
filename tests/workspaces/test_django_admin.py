"""Workspaces in the Django admin: saves go through the audited services; secrets are write-only."""

from __future__ import annotations

import pytest
from django.utils.html import escape

from audit.models import AuditEntry
from workspaces.models import Workspace
from workspaces.validators import CREDENTIALS_IN_CLEAR

pytestmark = pytest.mark.django_db

FORM = {
    "name": "Kasm desk",
    "type": "linux",
    "description": "A KasmVNC host.",
    "status": "available",
    "icon": "linux",
    "image_url": "",
    "cpu": "2 vCPU",
    "memory": "4 GB",
    "storage": "50 GB",
    "connection_type": "vnc",
    "url": "",
    "requires_netbird": "on",
    "provisioner": "static",
    "vnc_target": "wss://kasm.internal:6901/websockify",
    "vnc_tls_verify": "on",
    "vnc_username": "kasm_user",
    "new_vnc_secret": "",
    "new_rfb_password": "",
    # What the add page fills in for a workspace that is not a container desktop.
    "container_image": "",
    "container_protocol": "rfb",
    "container_port": "5900",
    "container_capabilities": "[]",
    "new_container_environment": "",
}


@pytest.fixture
def kasm(site):
    response = site.post(
        "/admin/workspaces/workspace/add/",
        {**FORM, "new_vnc_secret": "kasm-Basic-1", "new_rfb_password": "kasm-rfb-1"},
    )
    assert response.status_code == 302, response.content
    return Workspace.objects.get(name="Kasm desk")


def test_the_workspace_list_filters_and_searches(site, api):
    api.get("/api/workspaces")

    for query in ("", "?type__exact=linux", "?provisioner__exact=local_desktop", "?q=SAP"):
        response = site.get(f"/admin/workspaces/workspace/{query}")
        assert response.status_code == 200
    assert b"Linux Desktop" in site.get("/admin/workspaces/workspace/?q=linux").content


def test_adding_a_workspace_is_audited_and_stores_its_secrets_encrypted(kasm, superuser):
    assert kasm.vnc_secret == "kasm-Basic-1"
    assert kasm.rfb_password == "kasm-rfb-1"
    entry = AuditEntry.objects.get(action="create_workspace")
    assert entry.actor == superuser
    assert entry.resource == f"workspace:{kasm.id}"
    assert "kasm-Basic-1" not in str(entry.details)


def test_the_change_page_never_shows_a_secret(site, kasm):
    page = site.get(f"/admin/workspaces/workspace/{kasm.id}/change/")

    assert page.status_code == 200
    assert b"kasm-Basic-1" not in page.content and b"kasm-rfb-1" not in page.content


def test_saving_with_blank_secret_fields_keeps_the_secrets(site, kasm):
    response = site.post(
        f"/admin/workspaces/workspace/{kasm.id}/change/", {**FORM, "memory": "8 GB"}
    )

    assert response.status_code == 302
    kasm.refresh_from_db()
    assert kasm.memory == "8 GB"
    assert kasm.vnc_secret == "kasm-Basic-1" and kasm.rfb_password == "kasm-rfb-1"
    assert AuditEntry.objects.get(action="update_workspace").details == {"changed": ["memory"]}


def test_a_new_secret_replaces_and_the_clear_box_removes(site, kasm):
    site.post(
        f"/admin/workspaces/workspace/{kasm.id}/change/",
        {**FORM, "new_vnc_secret": "kasm-Basic-2", "clear_rfb_password": "on"},
    )

    kasm.refresh_from_db()
    assert kasm.vnc_secret == "kasm-Basic-2"
    assert kasm.rfb_password == ""
    assert AuditEntry.objects.get(action="update_workspace").details == {
        "changed": ["rfb_password", "vnc_secret"]
    }


def test_an_invalid_size_is_refused_by_the_form(site):
    response = site.post("/admin/workspaces/workspace/add/", {**FORM, "cpu": "lots"})

    assert response.status_code == 200
    assert b"vCPU" in response.content
    assert not Workspace.objects.exists()


def test_basic_credentials_for_a_plain_ws_target_are_refused_by_the_form(site):
    plain = {**FORM, "vnc_target": "ws://kasm.internal:6901/websockify"}

    response = site.post("/admin/workspaces/workspace/add/", {**plain, "new_vnc_secret": "s3cr"})

    assert response.status_code == 200
    assert escape(CREDENTIALS_IN_CLEAR).encode() in response.content
    assert not Workspace.objects.exists()
    assert not AuditEntry.objects.exists()


def test_a_kasmvnc_workspace_moves_to_plain_ws_only_with_its_credentials_cleared(site, kasm):
    plain = {**FORM, "vnc_target": "ws://kasm.internal:6901/websockify", "vnc_username": ""}
    page = f"/admin/workspaces/workspace/{kasm.id}/change/"

    kept = site.post(page, plain)
    cleared = site.post(page, {**plain, "clear_vnc_secret": "on"})

    assert kept.status_code == 200
    assert escape(CREDENTIALS_IN_CLEAR).encode() in kept.content
    assert cleared.status_code == 302
    kasm.refresh_from_db()
    assert (kasm.vnc_target, kasm.vnc_username, kasm.vnc_secret) == (plain["vnc_target"], "", "")
    assert [entry.details for entry in AuditEntry.objects.filter(action="update_workspace")] == [
        {"changed": ["vnc_secret", "vnc_target", "vnc_username"]}
    ]


def test_deleting_through_the_admin_is_audited(site, kasm, superuser):
    response = site.post(f"/admin/workspaces/workspace/{kasm.id}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert not Workspace.objects.exists()
    assert AuditEntry.objects.get(action="delete_workspace").actor == superuser


def test_the_users_list_shows_their_mfa_state(site, user):
    from accounts.models import Profile

    Profile.objects.update_or_create(user=user, defaults={"mfa_enabled": True})

    response = site.get("/admin/accounts/user/?profile__mfa_enabled__exact=1")

    assert response.status_code == 200
    assert b"alice@example.com" in response.content


def test_a_container_desktop_is_set_up_in_the_admin_and_its_environment_never_shown(site):
    response = site.post(
        "/admin/workspaces/workspace/add/",
        {
            **FORM,
            "name": "Browser",
            "provisioner": "container",
            "vnc_target": "",
            "vnc_username": "",
            "container_image": "localhost/workgate-browser:latest",
            "container_capabilities": '["SYS_CHROOT"]',
            "new_container_environment": '{"BROWSER_URL": "https://intranet.example/?token=s3cr3t"}',
        },
    )

    assert response.status_code == 302, response.content
    workspace = Workspace.objects.get(name="Browser")
    assert workspace.container_capabilities == ["SYS_CHROOT"]
    assert workspace.container_environment_names == ["BROWSER_URL"]
    page = site.get(f"/admin/workspaces/workspace/{workspace.pk}/change/").content.decode()
    assert "BROWSER_URL" in page and "s3cr3t" not in page


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"container_capabilities": '["SYS_ADMIN"]'}, "Not grantable to a desktop: SYS_ADMIN"),
        ({"new_container_environment": '{"VNC_PW": "x"}'}, "is set by Workgate"),
        ({"new_container_environment": '["A=1"]'}, "Enter a JSON object"),
        ({"container_image": ""}, "needs the image"),
    ],
)
def test_what_a_container_desktop_may_not_be_is_refused_by_the_form(site, fields, says):
    response = site.post(
        "/admin/workspaces/workspace/add/",
        {
            **FORM,
            "provisioner": "container",
            "vnc_target": "",
            "vnc_username": "",
            "container_image": "localhost/workgate-desktop:latest",
            **fields,
        },
    )

    assert response.status_code == 200
    assert escape(says) in response.content.decode()
    assert not Workspace.objects.filter(name="Kasm desk").exists()
