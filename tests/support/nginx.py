"""nginx as docs/deployment.md configures it, in front of two Daphne processes, for tests.

The `nginx` block is read out of the document, and only what a test must change is changed: the
listen ports (loopback, free ports), the upstream ports, the certificate (a self-signed one made
here) and the access log's path. Every change names the text it replaces, so a test fails when
the document no longer says it, rather than quietly testing something else.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import re
import shutil
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.conf import settings

from tests.support import processes
from tests.support.desktops import GEOMETRY, stop_desktops_under

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
needs_nginx = pytest.mark.needs_programs(NGINX)
DOCS = processes.ROOT / "docs"
WAIT = 20


def documented(language: str, document: str) -> list[str]:
    """The `language` blocks of a document under docs/, exactly as a reader would copy them."""
    return re.findall(rf"^```{language}\n(.*?)^```", (DOCS / document).read_text(), re.S | re.M)


def documented_config() -> str:
    """The gateway's block: the first of deployment.md (the apps domain's follows it)."""
    return documented("nginx", "deployment.md")[0]


def replace(text: str, old: str, new: str, count: int = 1) -> str:
    assert text.count(old) == count, f"the document no longer says {old!r}"
    return text.replace(old, new)


def local_config(*, http: int, https: int, upstreams: list[int], cert: Path, key: Path, logs: Path):
    """The documented server blocks on loopback ports, inside a main configuration of their own."""
    conf = documented_config()
    conf = replace(
        conf,
        "server 127.0.0.1:8001;\n    server 127.0.0.1:8002;",
        "\n    ".join(f"server 127.0.0.1:{port};" for port in upstreams),
    )
    conf = replace(conf, "listen 80;", f"listen 127.0.0.1:{http};")
    conf = replace(conf, "listen [::]:80;", f"listen [::1]:{http};")
    conf = replace(conf, "listen 443 ssl http2;", f"listen 127.0.0.1:{https} ssl http2;")
    conf = replace(conf, "listen [::]:443 ssl http2;", f"listen [::1]:{https} ssl http2;")
    conf = replace(conf, "/etc/letsencrypt/live/gw.example.com/fullchain.pem", str(cert))
    conf = replace(conf, "/etc/letsencrypt/live/gw.example.com/privkey.pem", str(key))
    conf = replace(conf, "/var/log/nginx/workgate.access.log", str(logs / "access.log"))
    return f"""
daemon off;
worker_processes 1;
pid {logs}/nginx.pid;
error_log {logs}/error.log info;
events {{ worker_connections 512; }}
http {{
    access_log off;
    client_body_temp_path {logs}/body;
    proxy_temp_path {logs}/proxy;
{conf}
}}
"""


def self_signed(
    directory: Path, hosts: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")
) -> tuple[Path, Path]:
    """A certificate for `hosts` (by default localhost, 127.0.0.1 and ::1), and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    now = datetime.datetime.now(datetime.UTC)
    names = [_subject_alternative_name(host) for host in hosts]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class Gateway:
    """nginx's two ports, the trust to reach its HTTPS one, its access log, and the Daphnes."""

    def __init__(self, http: int, https: int, cert: Path, logs: Path, daphnes: list):
        self.http_port, self.https_port, self.cert, self.logs = http, https, cert, logs
        self.daphnes = daphnes
        self.url = f"https://[::1]:{https}"
        self.ssl = ssl.create_default_context(cafile=str(cert))

    def serving(self, path: str) -> list[int]:
        """Which Daphne processes (by index) have accepted a WebSocket under `path`: their logs."""
        return [
            n
            for n in range(len(self.daphnes))
            if f"WSCONNECT {path}" in (self.logs / f"daphne-{n}.log").read_text()
        ]

    def client(self, **kwargs) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, verify=self.ssl, timeout=WAIT, **kwargs)

    def access_log(self) -> str:
        return (self.logs / "access.log").read_text()


@contextlib.contextmanager
def running_gateway(logs: Path, **settings_environment: str) -> Iterator[Gateway]:
    """nginx, configured from the document, in front of two Daphne processes with local
    desktops (and `settings_environment`); each Daphne has its own exit stack in
    `gateway.daphnes`, so a test can stop one by its pid."""
    runtime = logs / "runtime"
    cert, key = self_signed(logs)
    environment = {
        "REDIS_URL": settings.REDIS_URL,
        # As docs/deployment.md says for nginx on the same host.
        "WORKGATE_TRUSTED_PROXIES": "127.0.0.1/32,::1/128",
        "WORKGATE_LOCAL_DESKTOP": "1",
        "WORKGATE_LOCAL_DESKTOP_HOST_SHELL_FOR_EVERYONE": "1",  # its users are not superusers
        "WORKGATE_LOCAL_DESKTOP_COMMAND": "",
        "WORKGATE_LOCAL_DESKTOP_GEOMETRY": "{}x{}".format(*GEOMETRY),
        "WORKGATE_RUNTIME_DIR": str(runtime),
        "PYTHONUNBUFFERED": "1",  # Daphne's access log goes to stdout
        **settings_environment,
    }
    http, https = processes.free_port(), processes.free_port()
    with contextlib.ExitStack() as stack:
        daphnes, upstreams = [], []
        for n in range(2):
            daphne = stack.enter_context(contextlib.ExitStack())
            upstreams.append(
                daphne.enter_context(processes.daphne(logs / f"daphne-{n}.log", **environment))
            )
            daphnes.append(daphne)
        conf = logs / "nginx.conf"
        conf.write_text(
            local_config(http=http, https=https, upstreams=upstreams, cert=cert, key=key, logs=logs)
        )
        argv = [NGINX, "-p", logs, "-e", logs / "error.log", "-c", conf]
        try:
            stack.enter_context(processes.running(argv, port=https))
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError((logs / "error.log").read_text()[-3000:]) from exc
        try:
            yield Gateway(http, https, cert, logs, daphnes)
        finally:
            # Desktops outlive the server that started them (by design); none may outlive this.
            stop_desktops_under(runtime)


def _subject_alternative_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)
