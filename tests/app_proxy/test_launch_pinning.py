"""Launching a web workspace pins its upstream: the url's name is resolved once, every address
must be inside WORKGATE_APP_UPSTREAM_NETWORKS and outside the deny list, and a refusal leaves
nothing behind but its audit entry."""

from __future__ import annotations

import ipaddress

import pytest
from django.db import connection

from audit.models import AuditEntry
from sessions_app.models import WorkspaceSession
from tests.app_proxy.conftest import APP_ADDRESS, APP_HOST
from tests.support.sessions import launch
from workspaces.models import Workspace

pytestmark = pytest.mark.django_db


def test_a_launch_pins_the_resolved_address_and_copies_the_credential_encrypted(
    api, user, web_app, names
):
    response = launch(api, web_app.id)

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "ready"
    assert body["stream_url"] == f"/viewer/{body['session_id']}"
    assert body["security"]["no_open_ports"] is True
    session = WorkspaceSession.objects.get()
    assert session.provisioner == "web"
    assert session.upstream_kind == "http"
    assert session.upstream_target == f"https://{APP_HOST}:8443/base"
    assert session.upstream_address == APP_ADDRESS
    assert session.upstream_tls_verify is True
    assert session.upstream_username == "Authorization"
    assert session.upstream_secret == "Bearer app-credential-0042"
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT upstream_secret FROM sessions_app_workspacesession WHERE id = %s",
            [session.id],
        )
        (stored,) = cursor.fetchone()
    assert "app-credential-0042" not in stored
    assert "app-credential-0042" not in response.content.decode()
    entry = AuditEntry.objects.get(action="launch_workspace")
    assert "app-credential-0042" not in str(entry.details)

    # The name now resolves elsewhere: the session keeps the address it was pinned to.
    names[APP_HOST] = ["10.20.9.9"]
    session.refresh_from_db()
    assert session.upstream_address == APP_ADDRESS


def refused(api, workspace_id: str, status: int, code: str, says: str):
    before = AuditEntry.objects.count()
    response = launch(api, workspace_id)
    assert response.status_code == status, response.content
    body = response.json()
    assert body["success"] is False and body["code"] == code
    assert says in body["detail"]
    # Nothing half-written: no session, the workspace untouched, one refusal in the log.
    assert not WorkspaceSession.objects.exists()
    assert Workspace.objects.get(pk=workspace_id).status == "available"
    [entry] = AuditEntry.objects.order_by("id")[before:]
    assert entry.action == "launch_workspace" and entry.success is False
    assert entry.resource == f"workspace:{workspace_id}"
    assert entry.details["refused"] == code
    assert entry.details["status_code"] == status
    return body


def test_with_no_network_allowed_no_web_app_is_launched_and_the_setting_is_named(
    api, web_app, settings
):
    settings.WORKGATE_APP_UPSTREAM_NETWORKS = []

    refused(api, web_app.id, 503, "provisioner_unavailable", "WORKGATE_APP_UPSTREAM_NETWORKS")


def test_an_address_outside_the_allowed_networks_is_refused(api, web_app, names):
    names[APP_HOST] = ["10.30.0.5"]

    refused(api, web_app.id, 403, "app_upstream_not_allowed", "WORKGATE_APP_UPSTREAM_NETWORKS")


def test_one_address_outside_among_several_is_enough_to_refuse(api, web_app, names):
    names[APP_HOST] = [APP_ADDRESS, "192.0.2.1"]

    refused(api, web_app.id, 403, "app_upstream_not_allowed", "WORKGATE_APP_UPSTREAM_NETWORKS")


@pytest.mark.parametrize(
    "address",
    [
        "169.254.169.254",  # the cloud metadata service
        "::ffff:169.254.169.254",  # the same, IPv4-mapped
        "fe80::1",
        "0.0.0.0",  # noqa: S104 (what a name resolves to here, not a bind)
        "224.0.0.1",
        "::",
    ],
)
def test_metadata_and_link_local_addresses_are_refused_even_inside_an_allowed_network(
    api, web_app, names, settings, address
):
    settings.WORKGATE_APP_UPSTREAM_NETWORKS = [
        ipaddress.ip_network("0.0.0.0/8"),
        ipaddress.ip_network("169.254.0.0/16"),
        ipaddress.ip_network("224.0.0.0/8"),
        ipaddress.ip_network("fe80::/16"),
        ipaddress.ip_network("::/16"),
    ]
    names[APP_HOST] = [address]

    refused(api, web_app.id, 403, "app_upstream_denied", "never reaches")


@pytest.mark.parametrize("setting", ["DATABASE", "REDIS"])
def test_the_gateways_own_database_and_redis_are_refused_even_when_loopback_is_allowed(
    api, web_app, names, settings, setting
):
    """The suite's PostgreSQL and Redis listen on loopback: an app named at their address and
    port is refused, while another port of the same host would be an app like any other."""
    settings.WORKGATE_APP_UPSTREAM_NETWORKS = [ipaddress.ip_network("127.0.0.0/8")]
    database = settings.DATABASES["default"]
    port = int(database["PORT"] or 5432) if setting == "DATABASE" else 6379
    names["db-alias.test"] = ["127.0.0.1"]
    Workspace.objects.filter(pk=web_app.pk).update(url=f"http://db-alias.test:{port}/")

    refused(api, web_app.id, 403, "app_upstream_denied", "never reaches")

    Workspace.objects.filter(pk=web_app.pk).update(url="http://db-alias.test:18080/")
    assert launch(api, web_app.id).status_code == 201


def test_a_name_that_does_not_resolve_is_a_503(api, web_app):
    Workspace.objects.filter(pk=web_app.pk).update(url="http://nowhere.test/")

    refused(api, web_app.id, 503, "app_unresolved", "does not resolve")


def test_a_web_workspace_without_a_url_says_so(api, web_app):
    Workspace.objects.filter(pk=web_app.pk).update(url="")

    refused(api, web_app.id, 503, "provisioner_unavailable", "has no url")


def test_a_name_resolving_elsewhere_between_the_check_and_the_start_fails_the_start(
    api, web_app, names, monkeypatch
):
    """The launch checks before any row exists, then pins as it starts: a name that answers
    differently the second time (DNS rebinding at launch) is refused there, and the session
    ends at once (audited) with nothing pinned."""
    answers = iter([[APP_ADDRESS], ["169.254.169.254"]])
    from sessions_app.provisioners import web

    monkeypatch.setattr(web, "resolve", lambda host, port: next(answers))

    response = launch(api, web_app.id)

    assert response.status_code == 503, response.content
    session = WorkspaceSession.objects.get()
    assert session.status == "error" and session.end_reason == "start_failed"
    assert session.upstream_address is None and session.upstream_kind == ""
    assert AuditEntry.objects.filter(action="launch_failed").count() == 1
