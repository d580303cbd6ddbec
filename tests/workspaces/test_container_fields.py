"""A workspace whose sessions each get a container of their own: what an administrator sets
(image, protocol, port, capabilities, environment) through the admin API and the Django admin,
what the catalog returns of it, and what is refused."""

from __future__ import annotations

import json

import pytest
from django.db import connection

from audit.models import AuditEntry
from workspaces.models import Workspace

pytestmark = pytest.mark.django_db

CONTAINER = {
    "name": "Team desktop",
    "type": "linux",
    "description": "A fresh desktop per launch",
    "connection_type": "vnc",
    "requires_netbird": False,
    "provisioner": "container",
    "container_image": "localhost/workgate-desktop:latest",
    "cpu": "2 vCPU",
    "memory": "4 GB",
}
SECRET_VALUE = "s3cr3t-license-key-0042"


def create(admin_api, **fields):
    return admin_api.post("/api/workspaces", {**CONTAINER, **fields}, format="json")


def test_an_admin_creates_a_container_workspace_and_its_environment_is_never_returned(admin_api):
    response = create(
        admin_api,
        container_environment={"LICENSE_KEY": SECRET_VALUE, "LANG": "de_DE.UTF-8"},
        container_capabilities=["SYS_CHROOT"],
    )

    assert response.status_code == 201, response.content
    workspace = response.json()["workspace"]
    assert workspace["container_image"] == "localhost/workgate-desktop:latest"
    assert (workspace["container_protocol"], workspace["container_port"]) == ("rfb", 5900)
    assert workspace["container_capabilities"] == ["SYS_CHROOT"]
    assert workspace["container_environment_names"] == ["LANG", "LICENSE_KEY"]
    assert SECRET_VALUE not in response.content.decode()
    listed = admin_api.get(f"/api/workspaces/{workspace['id']}").content.decode()
    assert SECRET_VALUE not in listed and "container_environment_names" in listed
    stored = Workspace.objects.get(pk=workspace["id"])
    assert json.loads(stored.container_environment)["LICENSE_KEY"] == SECRET_VALUE
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT container_environment FROM workspaces_workspace WHERE id = %s",
            [workspace["id"]],
        )
        (raw,) = cursor.fetchone()
    assert SECRET_VALUE not in raw  # encrypted at rest
    entry = AuditEntry.objects.get(action="create_workspace")
    assert SECRET_VALUE not in json.dumps(entry.details)


def test_users_never_see_how_a_container_desktop_is_made(admin_api, api):
    create(admin_api, container_environment={"LICENSE_KEY": SECRET_VALUE})

    item = next(w for w in api.get("/api/workspaces").json() if w["name"] == "Team desktop")

    assert not any(name.startswith("container_") for name in item)


@pytest.mark.parametrize(
    ("fields", "field", "says"),
    [
        ({"container_image": ""}, "container_image", "needs the image"),
        ({"container_image": "--privileged"}, "container_image", "image reference"),
        ({"container_image": "ubuntu; rm -rf /"}, "container_image", "image reference"),
        ({"container_capabilities": ["SYS_ADMIN"]}, "container_capabilities", "SYS_ADMIN"),
        ({"container_capabilities": ["NET_RAW"]}, "container_capabilities", "NET_RAW"),
        # Ambient for the desktop's user on Podman: anyone on the desktop would become uid 0.
        ({"container_capabilities": ["SETUID"]}, "container_capabilities", "SETUID"),
        ({"container_capabilities": ["DAC_OVERRIDE"]}, "container_capabilities", "DAC_OVERRIDE"),
        ({"container_capabilities": "SYS_CHROOT"}, "container_capabilities", "list"),
        ({"container_environment": {"VNC_PW": "mine"}}, "container_environment", "VNC_PW"),
        ({"container_environment": {"1BAD": "x"}}, "container_environment", "NAME"),
        ({"container_environment": {"A": 1}}, "container_environment", "strings"),
        ({"container_environment": ["A=1"]}, "container_environment", "object"),
        ({"container_port": 70000}, "container_port", "65535"),
        ({"container_protocol": "rdp"}, "container_protocol", "not a valid choice"),
    ],
)
def test_what_a_container_desktop_may_not_be_is_a_400_naming_the_field(
    admin_api, fields, field, says
):
    response = create(admin_api, **fields)

    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "invalid"
    assert says in json.dumps(body["errors"][field])
    assert not Workspace.objects.filter(name="Team desktop").exists()
    assert not AuditEntry.objects.filter(action="create_workspace").exists()


def test_an_unchanged_environment_is_no_change_and_an_empty_one_clears_it(admin_api):
    workspace_id = create(admin_api, container_environment={"B": "2", "A": "1"}).json()[
        "workspace"
    ]["id"]

    admin_api.patch(
        f"/api/workspaces/{workspace_id}",
        {"container_environment": {"A": "1", "B": "2"}},
        format="json",
    )
    cleared = admin_api.patch(
        f"/api/workspaces/{workspace_id}", {"container_environment": {}}, format="json"
    )

    changes = [
        entry.details["changed"]
        for entry in AuditEntry.objects.filter(action="update_workspace").order_by("id")
    ]
    assert changes == [[], ["container_environment"]]
    assert cleared.json()["workspace"]["container_environment_names"] == []
    assert Workspace.objects.get(pk=workspace_id).container_environment == ""
