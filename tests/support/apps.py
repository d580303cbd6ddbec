"""Real upstream web apps for the app proxy's tests and benchmark (issue 21), on loopback.

- JupyterLab (PyPI `jupyterlab`), the app that uses WebSockets: its lab page, terminals
  (`/terminals/websocket/<n>`, JSON text frames), and `/files/<path>` for large downloads;
- httpbin (PyPI) under gunicorn's gthread worker, for HTTP semantics: redirects, streamed and
  chunked bodies, `/drip`, uploads echoed by `/put` and `/anything`, and what the upstream
  received (`/headers`, `/cookies`);
- npm's `@modelcontextprotocol/server-everything` in its SSE mode: `GET /sse` holds an event
  stream whose first event names the `/message?sessionId=` endpoint, and the answer to each
  JSON-RPC POST there arrives on that stream.

The Python apps live in `.venv-apps/` (tests/apps/requirements.txt, installed by `make test` and
`make bench`), never in the project's venv; the MCP server in node_modules (package.json). Each
app runs on a free port in a process group of its own, is waited for until it answers, and is
stopped by its own pid when the block ends; `setpriv --pdeathsig` stops it too if the run that
started it is killed before its teardown.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support import processes

ROOT = processes.ROOT
APPS_VENV = ROOT / ".venv-apps"
JUPYTER = APPS_VENV / "bin" / "jupyter"
GUNICORN = APPS_VENV / "bin" / "gunicorn"
MCP_SERVER = ROOT / "node_modules" / "@modelcontextprotocol" / "server-everything" / "dist"
LOOPBACK = Path(__file__).with_name("loopback.cjs")
MiB = 1024 * 1024
START_TIMEOUT = 60.0  # seconds: the suite may share a busy 2-core machine


def _missing(path: Path, how: str) -> None:
    if not path.exists():
        raise RuntimeError(f"{path} is missing: {how}")


def _guarded(argv: list) -> list:
    """`argv` stopped with SIGTERM when the process that started it dies (a killed run)."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", *argv] if setpriv else argv


def _answers(url: str, headers: dict[str, str] | None = None) -> bool:
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 (loopback http)
    try:
        with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _wait_until_answering(proc, url: str, log: Path, headers=None) -> None:
    with contextlib.suppress(AssertionError):  # timed out: said below, with the log's tail
        processes.wait_for(
            lambda: proc.poll() is not None or _answers(url, headers), seconds=START_TIMEOUT
        )
    if proc.poll() is not None or not _answers(url, headers):
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        raise RuntimeError(f"{url} did not answer (exit {proc.poll()}): {tail}")


@contextlib.contextmanager
def _started(argv: list, *, url: str, log: Path, env: dict, cwd: Path, headers=None):
    with (
        log.open("ab") as out,
        processes.running(_guarded(argv), env=env, cwd=cwd, stdout=out, stderr=out) as proc,
    ):
        _wait_until_answering(proc, url, log, headers)
        yield proc


# JupyterLab ------------------------------------------------------------------------------------

# The lab's user settings: no news or update checks (their toast would cover the page, and the
# lab would fetch from the internet).
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "checkForUpdates": False,
        "fetchNews": "false",
    }
}


@dataclass(frozen=True)
class JupyterApp:
    port: int
    token: str  # the server's token: an upstream credential, `Authorization: token <token>`
    base_url: str  # "/" or a prefix such as "/apps/wg-0123456789ab/", always ending in "/"
    root_dir: Path  # what the lab shows and /files/ serves
    pid: int

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The lab's base: the workspace url a test launches."""
        return f"{self.origin}{self.base_url}"

    @property
    def authorization(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}

    def path(self, below: str) -> str:
        """A path on the server under its base_url, `below` without its leading slash."""
        return self.base_url + below.lstrip("/")


@contextlib.contextmanager
def jupyter(folder: Path, *, base_url: str = "/", token: str | None = None) -> Iterator[JupyterApp]:
    """JupyterLab on a free loopback port with a random token, its HOME and JUPYTER_* folders,
    and its root dir under `folder`; `base_url` for an app under a path prefix."""
    _missing(JUPYTER, "make test installs tests/apps/requirements.txt into .venv-apps/")
    if not base_url.startswith("/") or not base_url.endswith("/"):
        raise ValueError("base_url starts and ends with '/'")
    folder.mkdir(parents=True, exist_ok=True)
    home, root = folder / "home", folder / "root"
    data = home / ".local" / "share" / "jupyter"
    user_settings = home / ".jupyter" / "lab" / "user-settings"
    for path in (home, root, data):
        path.mkdir(parents=True, exist_ok=True)
    for name, values in LAB_SETTINGS.items():
        (user_settings / name).parent.mkdir(parents=True, exist_ok=True)
        (user_settings / name).write_text(json.dumps(values))
    token = token or secrets.token_hex(24)
    port = processes.free_port()
    env = {
        "PATH": f"{APPS_VENV / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "SHELL": "/bin/bash",
        "TERM": "xterm-256color",
        "LANG": "C.UTF-8",
        "JUPYTER_CONFIG_DIR": str(home / ".jupyter"),
        "JUPYTER_DATA_DIR": str(data),
        "JUPYTER_RUNTIME_DIR": str(folder / "runtime"),
        "IPYTHONDIR": str(home / ".ipython"),
        "JUPYTER_PLATFORM_DIRS": "1",
        "JUPYTERLAB_SETTINGS_DIR": str(user_settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(home / ".jupyter" / "lab" / "workspaces"),
    }
    argv = [
        JUPYTER,
        "lab",
        "--no-browser",
        "--allow-root",  # CI runs the suite as root
        "--ip=127.0.0.1",
        f"--port={port}",
        "--port-retries=0",
        f"--ServerApp.base_url={base_url}",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: tests read the terminal
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--ServerApp.terminado_settings={'shell_command': ['/bin/bash', '--norc', '--noprofile']}",
    ]
    status = f"http://127.0.0.1:{port}{base_url}api/status"
    auth = {"Authorization": f"token {token}"}
    with _started(
        argv, url=status, log=folder / "jupyter.log", env=env, cwd=root, headers=auth
    ) as proc:
        yield JupyterApp(port=port, token=token, base_url=base_url, root_dir=root, pid=proc.pid)


def large_file(app: JupyterApp, name: str = "big.bin", size: int = 100 * MiB) -> str:
    """A file of `size` bytes in the lab's root dir, made of a random MiB repeated (nothing for
    gzip to shrink); returns its path on the server, `<base_url>files/<name>`."""
    block = os.urandom(MiB)
    with (app.root_dir / name).open("wb") as out:
        whole, rest = divmod(size, MiB)
        for _ in range(whole):
            out.write(block)
        out.write(block[:rest])
    return app.path(f"files/{name}")


# httpbin ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpbinApp:
    port: int
    pid: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"


@contextlib.contextmanager
def httpbin(folder: Path, *, threads: int = 8) -> Iterator[HttpbinApp]:
    """httpbin under gunicorn (one gthread worker) on a free loopback port."""
    _missing(GUNICORN, "make test installs tests/apps/requirements.txt into .venv-apps/")
    folder.mkdir(parents=True, exist_ok=True)
    port = processes.free_port()
    env = {"PATH": f"{APPS_VENV / 'bin'}:/usr/bin:/bin", "HOME": str(folder), "LANG": "C.UTF-8"}
    argv = [
        GUNICORN,
        "--bind",
        f"127.0.0.1:{port}",
        "--worker-class",
        "gthread",
        "--threads",
        str(threads),
        "--timeout",
        "120",
        "httpbin:app",
    ]
    url = f"http://127.0.0.1:{port}/get"
    with _started(argv, url=url, log=folder / "httpbin.log", env=env, cwd=folder) as proc:
        yield HttpbinApp(port=port, pid=proc.pid)


# The MCP server over SSE ------------------------------------------------------------------------


@dataclass(frozen=True)
class McpSseApp:
    port: int
    pid: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def stream_url(self) -> str:
        return f"{self.url}sse"


def mcp_request(id_: int, method: str, params: dict | None = None) -> bytes:
    """A JSON-RPC request for the MCP server's `/message?sessionId=` endpoint."""
    return json.dumps(
        {"jsonrpc": "2.0", "id": id_, "method": method, "params": params or {}}
    ).encode()


MCP_INITIALIZE = {
    "protocolVersion": "2025-06-18",
    "capabilities": {},
    "clientInfo": {"name": "workgate-tests", "version": "1"},
}


@contextlib.contextmanager
def mcp_sse(folder: Path) -> Iterator[McpSseApp]:
    """`@modelcontextprotocol/server-everything sse` on a free port, bound to 127.0.0.1 by
    tests/support/loopback.cjs (the server reads only PORT and would listen everywhere)."""
    _missing(MCP_SERVER / "index.js", "make test runs npm install (package.json)")
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("node is missing")
    folder.mkdir(parents=True, exist_ok=True)
    port = processes.free_port()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(folder), "PORT": str(port)}
    argv = [node, "--require", LOOPBACK, MCP_SERVER / "index.js", "sse"]
    log = folder / "mcp.log"
    with (
        log.open("ab") as out,
        processes.running(
            _guarded(argv),
            port=port,
            env=env,
            cwd=folder,
            stdout=out,
            stderr=out,
            timeout=START_TIMEOUT,
        ) as proc,
    ):
        yield McpSseApp(port=port, pid=proc.pid)


# Workgate's app proxy in front of them --------------------------------------------------------

ORIGIN_COOKIE = "__Host-workgate-app"  # app_proxy.admission.cookie_name("origin", ...)
UPSTREAM_NETWORKS = "127.0.0.0/8"  # the apps above, and nothing else


@dataclass(frozen=True)
class AppGateway:
    """The gateway with WORKGATE_APPS_DOMAIN=apps.localhost:<port>: an app's origin is
    <scheme>://<runtime-id>.apps.localhost:<port>, which Chromium resolves to loopback itself;
    other clients connect to 127.0.0.1 and send that Host. `port` is where browsers connect:
    Daphne's own, or nginx's in front of it (`verify` then trusts nginx's certificate)."""

    port: int
    log: Path
    scheme: str = "http"
    verify: object = True  # an ssl.SSLContext for https
    name: str = "apps.localhost"  # the apps domain without its port

    @property
    def domain(self) -> str:
        return f"{self.name}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def host(self, runtime_id: str) -> str:
        return f"{runtime_id}.{self.domain}"

    def origin(self, runtime_id: str) -> str:
        return f"{self.scheme}://{self.host(runtime_id)}"

    def client(self, runtime_id: str, cookie: str | None = None, **kwargs):
        """An httpx client of the app's origin, with the app cookie when given (value only)."""
        import httpx

        headers = {"Host": self.host(runtime_id), **kwargs.pop("headers", {})}
        if cookie is not None:
            headers["Cookie"] = f"{ORIGIN_COOKIE}={cookie}"
        kwargs.setdefault("timeout", 30)
        return httpx.AsyncClient(
            base_url=self.base_url, headers=headers, verify=self.verify, **kwargs
        )

    def enter(self, app_url: str):
        """Open an app ticket's URL as a browser does (no redirect followed): the 303 answer."""
        import httpx

        url = httpx.URL(app_url)
        return httpx.get(
            f"{self.base_url}{url.raw_path.decode()}",
            headers={"Host": url.netloc.decode()},
            follow_redirects=False,
            timeout=30,
            verify=self.verify,
        )


def set_cookie_value(response, name: str = ORIGIN_COOKIE) -> str | None:
    """The value `response` sets for cookie `name`, read from its Set-Cookie headers (httpx's
    jar would drop a __Host- cookie set over http)."""
    for header in response.headers.get_list("set-cookie"):
        key, _, rest = header.partition("=")
        if key.strip() == name:
            return rest.split(";", 1)[0]
    return None


def signing_key_pem() -> str:
    """A fresh EC P-256 private key (PEM): the WORKGATE_APP_SIGNING_KEY a gateway with an apps
    domain requires outside DEBUG."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    return (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )


@contextlib.contextmanager
def app_gateway(log: Path, **environment: str) -> Iterator[AppGateway]:
    """The gateway on the test database and the suite's Redis, its apps domain under
    apps.localhost on its own port, web upstreams allowed on loopback, a signing key of its own."""
    from django.conf import settings

    port = processes.free_port()
    environment = {
        "REDIS_URL": settings.REDIS_URL,
        "WORKGATE_APPS_DOMAIN": f"apps.localhost:{port}",
        "WORKGATE_APP_UPSTREAM_NETWORKS": UPSTREAM_NETWORKS,
        "WORKGATE_APP_SIGNING_KEY": signing_key_pem(),
        "PYTHONUNBUFFERED": "1",
        **environment,
    }
    with processes.daphne(log, port=port, **environment):
        yield AppGateway(port=port, log=log)


def web_workspace(url: str, **fields):
    """A `web` workspace whose url is a real app (tests/support/workspaces.py's defaults)."""
    from tests.support.workspaces import make_web_workspace

    return make_web_workspace(url=url, provisioner="web", **fields)


def jupyter_workspace(app: JupyterApp, **fields):
    """The lab as a web workspace, its token the workspace's app credential: the browser never
    sees it, and without the proxy adding it the lab stops at its login."""
    return web_workspace(
        app.url,
        name="JupyterLab",
        app_credential_header="Authorization",
        app_credential=f"token {app.token}",
        **fields,
    )


def launched_runtime(api, workspace) -> str:
    """Launch `workspace` through the API as `api`'s user: the session's runtime id."""
    from tests.support.sessions import launch

    response = launch(api, str(workspace.id))
    assert response.status_code == 201, response.json()
    return response.json()["runtime_id"]


def app_url(api, runtime_id: str) -> str:
    """A fresh app ticket's URL for `runtime_id`, minted through the API."""
    response = api.post(
        "/api/agents/workspace/app-ticket", {"workspaceId": runtime_id}, format="json"
    )
    assert response.status_code == 200, response.json()
    return response.json()["appUrl"]


def app_cookie(api, gateway: AppGateway, runtime_id: str) -> str:
    """What a browser holds after opening the app: the app cookie's value, from spending a
    fresh ticket on the app's origin."""
    entered = gateway.enter(app_url(api, runtime_id))
    assert entered.status_code == 303, entered.text
    cookie = set_cookie_value(entered)
    assert cookie, entered.headers
    return cookie


@contextlib.contextmanager
def app_gateway_behind_nginx(folder: Path, **environment: str) -> Iterator[AppGateway]:
    """docs/deployment.md's two nginx blocks as written (ports, certificates, log paths and the
    apps domain's name changed) in front of one Daphne whose apps domain is nginx's HTTPS port:
    the gateway as production runs it."""
    from tests.support import nginx

    blocks = nginx.documented("nginx", "deployment.md")
    assert len(blocks) == 2, "deployment.md: the gateway's nginx block, then the apps domain's"
    apps_http, apps_https = processes.free_port(), processes.free_port()
    # Not under .localhost, whose app origins are plain http: this apps domain is served over
    # HTTPS, as production's. Clients connect to 127.0.0.1 and send the name as Host.
    name = "apps.example.test"
    cert, key = nginx.self_signed(folder, hosts=("127.0.0.1", "::1", f"*.{name}"))
    conf = blocks[1]
    for old, new, count in (
        ("listen 80;", f"listen 127.0.0.1:{apps_http};", 1),
        ("listen [::]:80;", f"listen [::1]:{apps_http};", 1),
        ("listen 443 ssl;", f"listen 127.0.0.1:{apps_https} ssl;", 1),
        ("listen [::]:443 ssl;", f"listen [::1]:{apps_https} ssl;", 1),
        ("server_name *.apps.example.com;", f"server_name *.{name};", 2),
        ("/etc/letsencrypt/live/apps.example.com/fullchain.pem", str(cert), 1),
        ("/etc/letsencrypt/live/apps.example.com/privkey.pem", str(key), 1),
        ("/var/log/nginx/workgate-apps.access.log", str(folder / "apps-access.log"), 1),
    ):
        conf = nginx.replace(conf, old, new, count)
    log = folder / "daphne.log"
    with contextlib.ExitStack() as stack:
        direct = stack.enter_context(
            app_gateway(
                log,
                WORKGATE_APPS_DOMAIN=f"{name}:{apps_https}",
                # As deployment.md says for nginx on the same host.
                WORKGATE_TRUSTED_PROXIES="127.0.0.1/32,::1/128",
                **environment,
            )
        )
        main = nginx.local_config(
            http=processes.free_port(),
            https=processes.free_port(),
            upstreams=[direct.port],
            cert=cert,
            key=key,
            logs=folder,
        )
        (folder / "nginx.conf").write_text(main.rstrip().removesuffix("}") + conf + "}\n")
        argv = [nginx.NGINX, "-p", folder, "-e", folder / "error.log", "-c", folder / "nginx.conf"]
        try:
            stack.enter_context(processes.running(argv, port=apps_https))
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError((folder / "error.log").read_text()[-3000:]) from exc
        yield AppGateway(
            port=apps_https,
            log=log,
            scheme="https",
            verify=ssl.create_default_context(cafile=str(cert)),
            name=name,
        )


def open_app(api, gateway: AppGateway, url: str, **fields) -> tuple[str, str]:
    """As `api`'s user, launch a new web workspace at `url` and open it: (runtime id, cookie)."""
    runtime = launched_runtime(api, web_workspace(url, **fields))
    return runtime, app_cookie(api, gateway, runtime)
