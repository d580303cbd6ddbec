"""An https app through the proxy (issue 21): the upstream is dialled at the address pinned at
launch while Host, SNI and the certificate check keep the workspace's name, which no resolver of
the gateway's process knows (so nothing but the pin could have found it); a certificate for
another name is refused (502) unless the workspace turns verification off."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import ssl

import pytest

from tests.app_proxy.conftest import APP_HOST
from tests.support import apps
from tests.support.database import orm
from tests.support.nginx import self_signed
from tests.support.processes import free_port

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    return self_signed(tmp_path_factory.mktemp("tls"), hosts=(APP_HOST,))


@pytest.fixture(scope="module")
def tls_gateway(django_db_setup, tmp_path_factory, certificate):
    """The gateway trusting the app's self-signed certificate (as an intranet CA)."""
    cert, _ = certificate
    with apps.app_gateway(
        tmp_path_factory.mktemp("tls-gateway") / "daphne.log", SSL_CERT_FILE=str(cert)
    ) as gateway:
        yield gateway


@pytest.fixture
async def tls_app(certificate):
    """An https upstream on loopback answering `200 <the Host it got>`, recording the SNI."""
    cert, key = certificate
    names: list[str | None] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda _sock, name, _context: names.append(name)

    async def serve(reader, writer):
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            host = next(
                line.split(":", 1)[1].strip()
                for line in head.split("\r\n")
                if line.lower().startswith("host:")
            ).encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(host), host))
            await writer.drain()
        writer.close()

    port = free_port()
    server = await asyncio.start_server(serve, "127.0.0.1", port, ssl=context)
    yield port, names
    server.close()


@pytest.fixture
def open_tls(settings, tls_gateway, api, names):
    settings.WORKGATE_APPS_DOMAIN = tls_gateway.domain
    settings.WORKGATE_APP_UPSTREAM_NETWORKS = [ipaddress.ip_network(apps.UPSTREAM_NETWORKS)]

    def open_app(url: str, **fields) -> tuple[str, str]:
        runtime = apps.launched_runtime(api, apps.web_workspace(url, **fields))
        return runtime, apps.app_cookie(api, tls_gateway, runtime)

    async def opener(name: str, port: int, **fields):
        names[name] = ["127.0.0.1"]  # what the launch resolves; the gateway's DNS knows nothing
        return await orm(lambda: open_app(f"https://{name}:{port}/", **fields))

    return opener


async def test_the_app_is_reached_at_the_pinned_address_under_its_own_name(
    open_tls, tls_gateway, tls_app
):
    port, sni = tls_app
    runtime, cookie = await open_tls(APP_HOST, port)

    async with tls_gateway.client(runtime, cookie) as client:
        response = await client.get("/")

    assert response.status_code == 200
    assert response.text == f"{APP_HOST}:{port}"
    assert sni == [APP_HOST]


async def test_a_certificate_for_another_name_is_refused_unless_verification_is_off(
    open_tls, tls_gateway, tls_app
):
    port, _ = tls_app
    checked, checked_cookie = await open_tls("other.intranet.test", port)
    unchecked, unchecked_cookie = await open_tls("lab.intranet.test", port, vnc_tls_verify=False)

    async with tls_gateway.client(checked, checked_cookie) as client:
        refused = await client.get("/")
    async with tls_gateway.client(unchecked, unchecked_cookie) as client:
        allowed = await client.get("/")

    assert refused.status_code == 502
    assert refused.json()["code"] == "upstream_unreachable"
    assert allowed.status_code == 200 and allowed.text == f"lab.intranet.test:{port}"
