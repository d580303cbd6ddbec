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
