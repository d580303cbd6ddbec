"""A desktop of one's own: a fresh container per session on a Docker-API engine.

The same code drives Docker Engine and Podman's Docker-compatible service (`podman system
service`), through the `docker` SDK. Engines are listed in WORKGATE_CONTAINER_ENGINES; a launch
goes to the answering engine with the fewest live sessions of this deployment, so desktops
spread over several hosts, and an engine that fails is passed over for a while.

Each container carries labels naming its deployment, session and runtime id: they are how the
reconciler (services.sessions_reconcile, run by reap_sessions) finds what no live session owns.
The session's own password is handed to the image as an environment value (VNC_PW, which Kasm's
images read too), never on a command line. The workspace's `cpu` and `memory` become the
container's limits, with a pids limit, every capability dropped but the few the workspace names
(from those an engine grants by default), no-new-privileges, never privileged. Nothing is
published: the relay reaches the container's address on a network of the session's own (the
default, for engines on the gateway's host: no other desktop can reach it), or on the shared
WORKGATE_CONTAINER_NETWORK (remote engines).

The engine, container and network live on the session row (`provisioner_state`), so any process
can stop what another started; `removed` is set once the engine confirmed the removal.
"""

from __future__ import annotations

import functools
import logging
import secrets
import string
import threading
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import docker
import requests
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db.models import Count

from sessions_app.models import WorkspaceSession
from sessions_app.provisioners.base import DesktopGone, ProvisionerUnavailable, Upstream
from sessions_app.provisioners.static import accepts_connections, rfb_greets
from workspaces.validators import environment_of

logger = logging.getLogger(__name__)

NAME = "container"
LABEL_DEPLOYMENT = "io.workgate.deployment"
LABEL_SESSION = "io.workgate.session"
LABEL_RUNTIME = "io.workgate.runtime"
LABEL_WORKSPACE = "io.workgate.workspace"
# The Engine API version both Docker Engine and Podman 4's compatible service answer.
API_VERSION = "1.41"
CALL_TIMEOUT = 15  # seconds for one engine call
PING_TIMEOUT = 3
# Connections kept to each engine: as many as launches can wait for their desktops at once
# (services._READINESS), so a burst does not open and drop connections.
POOL_SIZE = 32
UNHEALTHY_FOR = 30.0  # seconds an engine that failed is passed over
PROBE_TIMEOUT = 1.0
RFB_PASSWORD_LENGTH = 8  # VNC authentication reads the first 8 bytes, no more
KASMVNC_USER = "kasm_user"  # the Basic auth user of Kasm's images
LOG_MAX_SIZE = "1m"
_ALPHABET = string.ascii_letters + string.digits
_UNITS = {"MB": 2**20, "GB": 2**30, "TB": 2**40}
# Errors that mean "the engine did not do it", whatever the engine.
ENGINE_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException)


class ContainerGone(DesktopGone):
    """The session's container exited or was removed before its desktop answered."""


# --- Engines -----------------------------------------------------------------------------------


def engine_urls() -> list[str]:
    return list(settings.WORKGATE_CONTAINER_ENGINES)


def check_engine_configuration() -> None:
    """Refuse, at start, engines the gateway could not use safely (see _tls_for)."""
    for url in engine_urls():
        _tls_for(url)


def _tls_for(url: str) -> docker.tls.TLSConfig | None:
    """The TLS a connection to `url` uses: none for a unix socket; for tcp://, TLS with client
    certificates or nothing at all, since an engine's API without TLS is root on its host for
    anyone who reaches its port."""
    scheme = urlsplit(url).scheme
    if scheme == "unix":
        return None
    if scheme == "tcp" and not settings.WORKGATE_CONTAINER_NETWORK:
        raise ImproperlyConfigured(
            f"WORKGATE_CONTAINER_ENGINES: {url} is another host's engine: set "
            "WORKGATE_CONTAINER_NETWORK to the network its desktops join, routed to the "
            "gateways (a session's own network is reachable only on the engine's host)."
        )
    if scheme != "tcp":
        raise ImproperlyConfigured(
            f"WORKGATE_CONTAINER_ENGINES: {url!r} is neither unix:///path nor tcp://host:port"
        )
    folder = settings.WORKGATE_CONTAINER_TLS_DIR
    if not folder:
        raise ImproperlyConfigured(
            f"WORKGATE_CONTAINER_ENGINES: {url} needs TLS client certificates: set "
            "WORKGATE_CONTAINER_TLS_DIR to a folder with ca.pem, cert.pem and key.pem (an "
            "engine's API without TLS is root on its host for anyone who reaches its port)."
        )
    ca, cert, key = (Path(folder) / name for name in ("ca.pem", "cert.pem", "key.pem"))
    missing = [str(path) for path in (ca, cert, key) if not path.is_file()]
    if missing:
        raise ImproperlyConfigured(f"WORKGATE_CONTAINER_TLS_DIR: missing {', '.join(missing)}")
    return docker.tls.TLSConfig(client_cert=(str(cert), str(key)), ca_cert=str(ca), verify=True)


@functools.lru_cache(maxsize=64)
def client(url: str, timeout: int = CALL_TIMEOUT) -> docker.DockerClient:
    """The engine's client (one per engine, timeout and process; its HTTP pool is
    thread-safe)."""
    return docker.DockerClient(
        base_url=url,
        version=API_VERSION,
        timeout=timeout,
        tls=_tls_for(url),
        max_pool_size=POOL_SIZE,
    )


_unhealthy: dict[str, float] = {}  # engine url -> monotonic time it may be tried again
_unhealthy_lock = threading.Lock()


def _mark_unhealthy(url: str) -> None:
    with _unhealthy_lock:
        _unhealthy[url] = time.monotonic() + UNHEALTHY_FOR


def _answers(url: str) -> bool:
    with _unhealthy_lock:
        if _unhealthy.get(url, 0) > time.monotonic():
            return False
    try:
        client(url, PING_TIMEOUT).ping()
    except ENGINE_ERRORS:
        logger.warning("container engine %s is not answering", url)
        _mark_unhealthy(url)
        return False
    with _unhealthy_lock:
        _unhealthy.pop(url, None)
    return True


def _by_load() -> list[str]:
    """The engines, fewest live sessions of this deployment first (ties in the setting's order)."""
    live = dict(
        WorkspaceSession.objects.filter(status__in=WorkspaceSession.LIVE, provisioner=NAME)
        .values_list("provisioner_state__engine")
        .annotate(count=Count("pk"))
        .values_list("provisioner_state__engine", "count")
    )
    urls = engine_urls()
    return sorted(urls, key=lambda url: live.get(url, 0))


def _engine_for_launch() -> str:
    for url in _by_load():
        if _answers(url):
            return url
    raise ProvisionerUnavailable(
        "No container engine is answering (WORKGATE_CONTAINER_ENGINES); try again later."
    )


# --- Resources ---------------------------------------------------------------------------------


def nano_cpus(cpu: str) -> int:
    """ "2 vCPU" -> 2 CPUs in the engine's billionths."""
    return int(Decimal(cpu.split()[0]) * 10**9)


def size_bytes(size: str) -> int:
    """ "4 GB" -> 4 GiB, "512 MB" -> 512 MiB (binary units, as engines count memory)."""
    number, unit = size.split()
    return int(Decimal(number) * _UNITS[unit])


def new_password(protocol: str) -> str:
    length = RFB_PASSWORD_LENGTH if protocol == "rfb" else 24
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


@dataclass(frozen=True)
class Observed:
    """A Workgate container (or a session's own network) as its engine reports it."""

    id: str  # a container's id, a network's name
    session_id: str
    running: bool = False
    exit_code: int | None = None
    network: bool = False


# --- The provisioner ---------------------------------------------------------------------------


class ContainerProvisioner:
    name = NAME
    # start() returns as soon as the container runs; the session turns ready once its desktop
    # answers (services._ready_in_background), without a request thread waiting for it.
    readies_in_background = True

    @property
    def ready_timeout(self) -> float:
        return float(settings.WORKGATE_CONTAINER_READY_TIMEOUT)

    def check_available(self, workspace) -> None:
        if not engine_urls():
            raise ProvisionerUnavailable(
                f"Workspace {workspace.id} runs a desktop of its own per session, and no "
                "container engine is configured: an administrator must set "
                "WORKGATE_CONTAINER_ENGINES (docs/deployment.md, Desktop hosts)."
            )
        if not workspace.container_image:
            raise ProvisionerUnavailable(
                f"Workspace {workspace.id} has no container_image; an administrator must set one."
            )
        _engine_for_launch()  # refused here, before the session is written, when none answers

    def start(self, session) -> Upstream:
        workspace = session.workspace
        password = new_password(workspace.container_protocol)
        url = _engine_for_launch()
        engine = client(url)
        labels = _labels(session, workspace)
        state = {"engine": url, "network": settings.WORKGATE_CONTAINER_NETWORK}
        session.provisioner_state = state
        try:
            if not state["network"]:
                state["network"] = _session_network(url, session.runtime_id, labels)
                state["own_network"] = True
            container = engine.containers.create(
                workspace.container_image,
                network=state["network"],
                labels=labels,
                log_config=_log_config(url),
                **_container_options(session, workspace, password),
            )
            state.update(container=container.id, name=container.name)
            container.start()
            container.reload()
            host = _address(container, state["network"], workspace.container_port)
        except docker.errors.ImageNotFound as exc:
            _discard(state)
            raise ProvisionerUnavailable(
                f"The image {workspace.container_image} is not on the container engine."
            ) from exc
        except docker.errors.APIError as exc:
            # The engine answered, and refused (storage it cannot limit, no subnet left...):
            # it is not down, and what it said is for the administrator, in the log.
            _discard(state)
            logger.error("container engine %s refused session %s: %s", url, session.id, exc)
            raise ProvisionerUnavailable(
                "The container engine refused to start the desktop; an administrator can "
                "find why in the gateway's log."
            ) from exc
        except ENGINE_ERRORS:
            _discard(state)
            _mark_unhealthy(url)
            raise
        except Exception:
            _discard(state)
            raise
        return _upstream(workspace, host, password)

    def probe(self, session) -> bool:
        if session.upstream_kind == "tcp" and rfb_greets(session.upstream_target, PROBE_TIMEOUT):
            return True
        if session.upstream_kind == "websocket":
            parts = urlsplit(session.upstream_target)
            if accepts_connections(parts.hostname or "", parts.port or 443, PROBE_TIMEOUT):
                return True
        state = session.provisioner_state
        observed = client(state["engine"]).api.inspect_container(state["container"])["State"]
        if not observed.get("Running"):
            raise ContainerGone(
                f"the container exited (code {observed.get('ExitCode')}) before its desktop "
                "answered"
            )
        return False

    def stop(self, session) -> None:
        """Remove the container (it is never restarted); the engine's failure is raised, and
        the reconciler finishes the removal once the engine answers again."""
        state = session.provisioner_state or {}
        if not state.get("engine") or state.get("removed"):
            return
        _discard(state, raise_errors=True)
        WorkspaceSession.objects.filter(pk=session.pk).update(
            provisioner_state={**state, "removed": True}
        )


def _labels(session, workspace) -> dict[str, str]:
    return {
        LABEL_DEPLOYMENT: settings.WORKGATE_CONTAINER_DEPLOYMENT,
        LABEL_SESSION: str(session.id),
        LABEL_RUNTIME: session.runtime_id,
        LABEL_WORKSPACE: workspace.id,
    }


def _session_network(url: str, runtime_id: str, labels: dict[str, str]) -> str:
    """A network of the session's own, so that no other desktop can reach its VNC port: the
    gateway on the engine's host reaches it, other networks' containers do not (Docker keeps
    bridge networks apart; Podman does with its `isolate` option)."""
    name = f"workgate-{runtime_id}"
    client(url).networks.create(
        name,
        driver="bridge",
        internal=settings.WORKGATE_CONTAINER_NETWORK_INTERNAL,
        labels=labels,
        options={"isolate": "true"} if _is_podman(url) else {},
    )
    return name


@functools.lru_cache(maxsize=64)
def _is_podman(url: str) -> bool:
    components = client(url).version().get("Components") or []
    return any("podman" in (item.get("Name") or "").lower() for item in components)


def _container_options(session, workspace, password: str) -> dict:
    memory = size_bytes(workspace.memory)
    options = {
        "name": f"workgate-{session.runtime_id}",
        "hostname": session.runtime_id,
        "environment": {
            **environment_of(workspace.container_environment),
            "VNC_PW": password,
            "VNC_RESOLUTION": settings.WORKGATE_CONTAINER_RESOLUTION,
        },
        "nano_cpus": nano_cpus(workspace.cpu),
        "mem_limit": memory,
        "memswap_limit": memory,  # no swap past the memory limit
        "pids_limit": settings.WORKGATE_CONTAINER_PIDS_LIMIT,
        "cap_drop": ["ALL"],
        "cap_add": list(workspace.container_capabilities),
        "security_opt": ["no-new-privileges"],
        "privileged": False,
        "detach": True,
    }
    if settings.WORKGATE_CONTAINER_STORAGE_LIMIT:
        options["storage_opt"] = {"size": f"{size_bytes(workspace.storage)}"}
    return options


def _log_config(url: str) -> docker.types.LogConfig:
    """A container's log, capped: whatever a desktop's programs print lands in it, outside the
    writable layer and any storage limit (1 GB in 5 s, found by review)."""
    driver = "k8s-file" if _is_podman(url) else "json-file"
    return docker.types.LogConfig(type=driver, config={"max-size": LOG_MAX_SIZE})


def _address(container, network: str, port: int) -> str:
    """host:port where the relay reaches the desktop: its address on `network`."""
    attached = container.attrs["NetworkSettings"]["Networks"][network]
    address = attached.get("IPAddress") or attached.get("GlobalIPv6Address")
    if not address:
        raise ContainerGone(f"the container has no address on the network {network}")
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _upstream(workspace, host: str, password: str) -> Upstream:
    if workspace.container_protocol == workspace.DesktopProtocol.KASMVNC:
        # KasmVNC's own certificate is self-signed: the connection is to a container of this
        # session on the desktops' private network, authenticated with the session's password.
        return Upstream(
            kind="websocket",
            target=f"wss://{host}/websockify",
            username=KASMVNC_USER,
            secret=password,
            tls_verify=False,
        )
    return Upstream(kind="tcp", target=host, rfb_password=password)


def _remove(url: str, container_id: str, *, raise_errors: bool = False) -> bool:
    """Remove a container; whether it was there to remove (False: it was gone already)."""
    try:
        client(url).api.remove_container(container_id, force=True, v=True)
    except docker.errors.NotFound:
        return False
    except ENGINE_ERRORS as exc:
        if _gone(exc):
            return False
        logger.warning("could not remove container %s on %s: %s", container_id, url, exc)
        if raise_errors:
            raise
        return False
    return True


def _discard(state: dict, *, raise_errors: bool = False) -> None:
    """Remove what a session had on its engine: its container, then its own network."""
    if state.get("container"):
        _remove(state["engine"], state["container"], raise_errors=raise_errors)
    if state.get("own_network"):
        _remove_network(state["engine"], state["network"], raise_errors=raise_errors)


def _remove_network(url: str, name: str, *, raise_errors: bool = False) -> bool:
    try:
        client(url).api.remove_network(name)
    except docker.errors.NotFound:
        return False
    except ENGINE_ERRORS as exc:
        if "no such network" in str(exc).lower() or "not found" in str(exc).lower():
            return False
        logger.warning("could not remove network %s on %s: %s", name, url, exc)
        if raise_errors:
            raise
        return False
    return True


def _gone(exc: Exception) -> bool:
    # Podman's compatible API answers 500, not 404, for a container that no longer exists.
    return "no such container" in str(exc).lower()


# --- What the reconciler sees ------------------------------------------------------------------


def survey() -> dict[str, list[Observed]]:
    """Every container of this deployment, then every network of a session's own, per engine
    that answers (an engine that does not is left out: nothing can be said of what it holds
    until it answers)."""
    seen: dict[str, list[Observed]] = {}
    label = {"label": _deployment_label()}
    for url in engine_urls():
        try:
            containers = client(url).api.containers(all=True, filters=label)
            networks = client(url).api.networks(filters=label)
        except ENGINE_ERRORS:
            logger.warning("container engine %s is not answering; reconciled later", url)
            continue
        # A network without a session's label is not one of the sessions' own (the shared
        # WORKGATE_CONTAINER_NETWORK, say): never the reconciler's to remove.
        seen[url] = [_observed(item) for item in containers] + [
            Observed(id=item["Name"], session_id=_session_of(item), network=True)
            for item in networks
            if _session_of(item)
        ]
    return seen


def _session_of(item: dict) -> str:
    return (item.get("Labels") or {}).get(LABEL_SESSION, "")


def _deployment_label() -> str:
    return f"{LABEL_DEPLOYMENT}={settings.WORKGATE_CONTAINER_DEPLOYMENT}"


def _observed(item: dict) -> Observed:
    running = item.get("State") == "running"
    exit_code = None
    if not running:
        # "Exited (137) 2 minutes ago": Docker and Podman both give the code in the status.
        status = item.get("Status", "")
        if "(" in status:
            code = status.split("(", 1)[1].split(")", 1)[0]
            exit_code = int(code) if code.lstrip("-").isdigit() else None
    return Observed(
        id=item["Id"], session_id=_session_of(item), running=running, exit_code=exit_code
    )


def remove(url: str, item: Observed) -> bool:
    """Remove a container or a session's network; whether this call removed it (not when it
    was gone already, nor when the engine failed)."""
    try:
        if item.network:
            return _remove_network(url, item.id, raise_errors=True)
        return _remove(url, item.id, raise_errors=True)
    except ENGINE_ERRORS:
        return False
