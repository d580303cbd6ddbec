"""A web workspace reached through the gateway's app proxy (issue 21): what an administrator sets
(provisioner web, the app credential's header and write-only value, whether /apps/ is allowed)
through the admin API and the Django admin, what the catalog returns of it, and what is refused."""

from __future__ import annotations

import json

import pytest
from django.db import connection

from audit.models import AuditEntry
from tests.workspaces.test_django_admin import FORM
from workspaces.defaults import DEFAULT_WORKSPACES
from workspaces.models import Workspace

pytestmark = pytest.mark.django_db

WEB_APP = {
    "name": "Grafana",
    "type": "web",
    "description": "Dashboards",
    "connection_type": "web",
    "requires_netbird": False,
    "provisioner": "web",
    "url": "https://grafana.intranet.example/",
}
CREDENTIAL = "Bearer glsa_s3cr3t-0042"


def create(admin_api, **fields):
    return admin_api.post("/api/workspaces", {**WEB_APP, **fields}, format="json")


def test_an_admin_sets_an_app_credential_that_is_stored_encrypted_and_never_returned(admin_api):
    response = create(admin_api, app_credential_header="Authorization", app_credential=CREDENTIAL)

    assert response.status_code == 201, response.content
    workspace = response.json()["workspace"]
    assert workspace["provisioner"] == "web"
    assert workspace["app_credential_header"] == "Authorization"
    assert workspace["app_credential_set"] is True
    assert workspace["app_path_prefix_allowed"] is False
    assert "app_credential" not in workspace
    assert CREDENTIAL not in response.content.decode()
    assert CREDENTIAL not in admin_api.get(f"/api/workspaces/{workspace['id']}").content.decode()
    assert Workspace.objects.get(pk=workspace["id"]).app_credential == CREDENTIAL
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT app_credential FROM workspaces_workspace WHERE id = %s", [workspace["id"]]
        )
        (raw,) = cursor.fetchone()
    assert CREDENTIAL not in raw  # encrypted at rest
    assert CREDENTIAL not in json.dumps(list(AuditEntry.objects.values_list("details", flat=True)))


def test_users_never_see_how_a_web_app_is_reached(admin_api, api):
    create(admin_api, app_credential_header="X-Api-Key", app_credential=CREDENTIAL)

    item = next(w for w in api.get("/api/workspaces").json() if w["name"] == "Grafana")

    assert not any(name.startswith("app_") for name in item)
    assert "provisioner" not in item


def test_changing_the_credential_is_audited_by_name_and_blank_clears_it(admin_api):
    workspace_id = create(
        admin_api, app_credential_header="Authorization", app_credential=CREDENTIAL
    ).json()["workspace"]["id"]

    changed = admin_api.patch(
        f"/api/workspaces/{workspace_id}",
        {"app_credential": "Bearer another-0043", "app_path_prefix_allowed": True},
        format="json",
    )
    cleared = admin_api.patch(
        f"/api/workspaces/{workspace_id}", {"app_credential": ""}, format="json"
    )

    assert changed.status_code == cleared.status_code == 200
    assert changed.json()["workspace"]["app_path_prefix_allowed"] is True
    assert cleared.json()["workspace"]["app_credential_set"] is False
    changes = [
        entry.details["changed"]
        for entry in AuditEntry.objects.filter(action="update_workspace").order_by("id")
    ]
    assert changes == [["app_credential", "app_path_prefix_allowed"], ["app_credential"]]
    assert "another-0043" not in json.dumps(changes)


@pytest.mark.parametrize(
    ("fields", "field", "says"),
    [
        ({"app_credential_header": "Bad Header"}, "app_credential_header", "header name"),
        ({"app_credential_header": "X-Key\r\nX-Evil"}, "app_credential_header", "header name"),
        ({"app_credential_header": "Host"}, "app_credential_header", "set or removed"),
        ({"app_credential_header": "cookie"}, "app_credential_header", "set or removed"),
        ({"app_credential_header": "Connection"}, "app_credential_header", "set or removed"),
        ({"app_credential_header": "Transfer-Encoding"}, "app_credential_header", "set or removed"),
        ({"app_credential_header": "X-Forwarded-For"}, "app_credential_header", "set or removed"),
        (
            {"app_credential_header": "X-Workgate-Assertion"},
            "app_credential_header",
            "set or removed",
        ),
        ({"app_credential": CREDENTIAL}, "app_credential_header", "name it"),
        ({"provisioner": "wasm"}, "provisioner", "not a valid choice"),
    ],
)
def test_what_a_web_app_may_not_be_is_a_400_naming_the_field(admin_api, fields, field, says):
    response = create(admin_api, **fields)

    assert response.status_code == 400, response.content
    body = response.json()
    assert body["code"] == "invalid"
    assert says in json.dumps(body["errors"][field])
    assert CREDENTIAL not in response.content.decode()
    assert not Workspace.objects.filter(name="Grafana").exists()
    assert not AuditEntry.objects.filter(action="create_workspace").exists()


def test_the_seeds_web_and_html5_defaults_are_apps_through_the_gateway():
    web = {spec["id"]: spec for spec in DEFAULT_WORKSPACES if spec.get("provisioner") == "web"}

    assert set(web) == {"ws-sap-neogenesys", "ws-remote-desktop", "ws-1panel-admin"}


def test_a_web_app_is_set_up_in_the_django_admin_and_its_credential_never_shown(site):
    response = site.post(
        "/admin/workspaces/workspace/add/",
        {
            **FORM,
            "name": "Wiki",
            "type": "web",
            "connection_type": "web",
            "provisioner": "web",
            "url": "https://wiki.intranet.example/",
            "vnc_target": "",
            "vnc_username": "",
            "app_credential_header": "X-Api-Key",
            "new_app_credential": CREDENTIAL,
            "app_path_prefix_allowed": "on",
        },
    )

    assert response.status_code == 302, response.content
    workspace = Workspace.objects.get(name="Wiki")
    assert workspace.app_credential == CREDENTIAL and workspace.app_path_prefix_allowed
    page = site.get(f"/admin/workspaces/workspace/{workspace.pk}/change/").content.decode()
    assert CREDENTIAL not in page
    assert "shares the gateway&#x27;s origin" in page or "shares the gateway's origin" in page
    site.post(
        f"/admin/workspaces/workspace/{workspace.pk}/change/",
        {
            **FORM,
            "name": "Wiki",
            "type": "web",
            "connection_type": "web",
            "provisioner": "web",
            "url": "https://wiki.intranet.example/",
            "vnc_target": "",
            "vnc_username": "",
            "app_credential_header": "X-Api-Key",
            "clear_app_credential": "on",
        },
    )
    assert Workspace.objects.get(pk=workspace.pk).app_credential == ""
