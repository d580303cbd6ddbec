"""The control plane's fixtures: a web workspace whose name resolves where a test says (the one
resolver of web launches, replaced), the networks it may be on, and an assertion signing key."""

from __future__ import annotations

import ipaddress

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from app_proxy import keys
from sessions_app.provisioners import web
from workspaces.models import Workspace

APP_HOST = "app.intranet.test"
APP_ADDRESS = "10.20.0.5"
APP_NETWORK = "10.20.0.0/16"


@pytest.fixture
def signing_key(settings):
    """An ES256 key for identity assertions (forgotten again after the test)."""
    private = ec.generate_private_key(ec.SECP256R1())
    settings.WORKGATE_APP_SIGNING_KEY = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    keys.signing_key.cache_clear()
    keys.published_keys.cache_clear()
    yield settings.WORKGATE_APP_SIGNING_KEY
    keys.signing_key.cache_clear()
    keys.published_keys.cache_clear()


@pytest.fixture
def names(monkeypatch):
    """What each name resolves to for web launches: {name: [addresses]}; any other name does
    not resolve."""
    table: dict[str, list[str]] = {APP_HOST: [APP_ADDRESS]}

    def resolve(host: str, port: int) -> list[str]:
        try:
            return [str(ipaddress.ip_address(host))]
        except ValueError:
            pass
        if host not in table:
            raise OSError(f"{host} does not resolve (test table)")
        return list(table[host])

    monkeypatch.setattr(web, "resolve", resolve)
    return table


@pytest.fixture
def app_networks(settings):
    settings.WORKGATE_APP_UPSTREAM_NETWORKS = [ipaddress.ip_network(APP_NETWORK)]
    settings.WORKGATE_APPS_DOMAIN = "apps.example.test"
    return settings


@pytest.fixture
def web_app(db, names, app_networks, signing_key) -> Workspace:
    return Workspace.objects.create(
        id="ws-webapp01",
        name="Intranet app",
        type=Workspace.Type.WEB,
        description="A web app through the gateway.",
        url=f"https://{APP_HOST}:8443/base/",
        connection_type=Workspace.ConnectionType.WEB,
        provisioner=Workspace.Provisioner.WEB,
        requires_netbird=False,
        app_credential_header="Authorization",
        app_credential="Bearer app-credential-0042",
    )


@pytest.fixture
def app_runtime(api, web_app):
    """The signed-in `user`'s launched session of `web_app` (ready, pinned)."""
    from sessions_app.models import WorkspaceSession
    from tests.support.sessions import launch

    response = launch(api, web_app.id)
    assert response.status_code == 201, response.content
    return WorkspaceSession.objects.get(pk=response.json()["session_id"])


@pytest.fixture
def desktop_runtime(user, db):
    """A ready desktop session of `user` (a relayable upstream, no real desktop)."""
    from datetime import timedelta

    from django.utils import timezone

    from sessions_app.models import WorkspaceSession

    workspace = Workspace.objects.create(
        id="ws-desktop01",
        name="Desktop",
        type=Workspace.Type.LINUX,
        description="A desktop.",
        connection_type=Workspace.ConnectionType.VNC,
        vnc_target="tcp://127.0.0.1:9",
        requires_netbird=False,
    )
    now = timezone.now()
    return WorkspaceSession.objects.create(
        user=user,
        workspace=workspace,
        workspace_name=workspace.name,
        workspace_type=workspace.type,
        status=WorkspaceSession.Status.READY,
        started_at=now - timedelta(minutes=1),
        ready_at=now,
        last_seen_at=now,
        provisioner="static",
        upstream_kind=WorkspaceSession.UpstreamKind.TCP,
        upstream_target="127.0.0.1:9",
        rfb_password="pw123456",
    )


def ask_app_ticket(client, runtime_id: str, **extra):
    return client.post(
        "/api/agents/workspace/app-ticket", {"workspaceId": runtime_id}, format="json", **extra
    )


def ticket_in(app_url: str) -> str:
    from urllib.parse import parse_qs, urlsplit

    return parse_qs(urlsplit(app_url).query)["ticket"][0]
