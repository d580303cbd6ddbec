"""A real container engine for tests: Podman's Docker-compatible API service, started for the run.

`podman_service` starts `podman system service` on a socket of its own (with
images/containers.conf, as every podman command here), builds the desktop and browser images
when their sources changed (images/build.sh all), and makes an internal network for the run.
Containers are labelled with the run's own `label_scope` (io.workgate.deployment), so runs
sharing the machine never touch each other's containers; at the end, the run's containers, its
network and its route go, and the service is stopped by its own pid. Nothing else on the
engine is touched.

Podman 4.3's compatible API differs from Docker's where the tests meet it: a missing container
or network is a 500 ("no such container"), not a 404; `containers.list(sparse=True)` fails, so
listing is `client.api.containers(filters=...)`; an engine that is down raises requests'
ConnectionError, which docker.errors does not wrap.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import requests

from sessions_app.provisioners.container import API_VERSION, LABEL_DEPLOYMENT
from tests.support.processes import ROOT, missing_programs, stop

CONTAINERS_CONF = ROOT / "images" / "containers.conf"
BUILD = ROOT / "images" / "build.sh"
IMAGE = "localhost/workgate-desktop"
BROWSER_IMAGE = "localhost/workgate-browser"
START_TIMEOUT = 30.0  # seconds for the service to answer
BUILD_TIMEOUT = 600  # seconds: a first build makes the base and the desktop (about a minute)
# Below every route the engine's bridges add (metric 0): it only applies when the bridge is gone.
GUARD_METRIC = 4000
SUBNET_POOL = "10.89.0.0/16"  # images/containers.conf: default_subnet_pools
GUARD_HOLDERS = Path("/run/workgate-tests/route-guards")


@dataclass(frozen=True)
class PodmanEngine:
    url: str  # unix:///…/podman.sock, the service's Docker API
    network: str  # the run's internal network
    subnet: str  # its addresses, as 10.89.1.0/24
    image: str  # the desktop image of this checkout's sources, by its source tag
    browser_image: str  # the Secure Browser's (Chromium in kiosk mode), likewise
    label_scope: str  # the value of io.workgate.deployment on the run's containers


def podman_environment() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def engine_client(url: str, timeout: int = 30) -> docker.DockerClient:
    return docker.DockerClient(base_url=url, version=API_VERSION, timeout=timeout)


def engine_down_url(folder: Path) -> str:
    """An engine URL nothing answers at (a socket that does not exist): the docker SDK raises
    requests' ConnectionError on it, as for an engine that is down."""
    return f"unix://{folder / 'no-engine.sock'}"


def container_exec(url: str, container_id: str, cmd: list[str], *, check: bool = True) -> str:
    """What `cmd` prints (stdout and stderr) run inside the container as its own user; a command
    that fails raises AssertionError with its output, unless `check` is false."""
    with contextlib.closing(engine_client(url)) as client:
        result = client.containers.get(container_id).exec_run(cmd)
    output = result.output.decode(errors="replace")
    if check and result.exit_code != 0:
        raise AssertionError(f"{cmd} exited with {result.exit_code}: {output}")
    return output


def session_images() -> tuple[str, str]:
    """The desktop and browser images of this checkout's sources, built when their sources
    changed (within a second otherwise); by their source tags, not :latest, which another
    checkout may have moved."""
    built = subprocess.run(
        [BUILD, "all"],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    if built.returncode != 0:
        raise RuntimeError(f"images/build.sh all failed: {built.stderr[-3000:]}")
    desktop, browser = built.stdout.split()[-2:]
    assert desktop.startswith(f"{IMAGE}:") and browser.startswith(f"{BROWSER_IMAGE}:"), built
    return desktop, browser


def _wait_until_answering(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    with contextlib.closing(engine_client(url, timeout=2)) as client:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"podman system service exited with {proc.returncode}: "
                    f"{log.read_text(errors='replace')[-3000:]}"
                )
            with contextlib.suppress(docker.errors.DockerException, requests.RequestException):
                if client.ping():
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"podman system service did not answer in {START_TIMEOUT} s")
            time.sleep(0.05)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@contextlib.contextmanager
def _guarded(pool: str) -> Iterator[None]:
    """What every engine host needs (docs/deployment.md, "Desktop hosts"), for the networks
    podman makes (images/containers.conf: default_subnet_pools), the sessions' own included:

    - an unreachable route: while a network has no container, its bridge is gone, and a packet
      to an address of it would follow the default route out to the real network;
    - a FORWARD drop between those networks: Podman 4.3's API service makes networks whose
      `isolate` option netavark does not apply, so one desktop would reach another's port.

    Runs on one machine (a test run, a benchmark, a second checkout's) share both: each holds
    them with a file named by its pid, and the last one out deletes them; a holder that was
    killed counts no more once its pid is gone."""
    route = ("unreachable", pool, "metric", str(GUARD_METRIC))
    drop = ("FORWARD", "-s", pool, "-d", pool, "-j", "DROP")
    holders = GUARD_HOLDERS / pool.replace("/", "_")
    holders.mkdir(parents=True, exist_ok=True)
    mine = holders / str(os.getpid())
    with _locked(holders):
        mine.touch()
        _ip("route", "replace", *route)  # replace: a killed run may have left the same route
        if _iptables("-C", *drop).returncode != 0:
            _iptables("-I", *drop, check=True)  # first, above netavark's own rules
    try:
        yield
    finally:
        with _locked(holders):
            mine.unlink(missing_ok=True)
            if not any(_running(held.name) for held in holders.iterdir()):
                _ip("route", "del", *route)
                _iptables("-D", *drop, check=True)


def _iptables(*args: str, check: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(["iptables", *args], check=check, capture_output=True, timeout=10)


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    with (folder / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _running(name: str) -> bool:
    return name.isdigit() and Path(f"/proc/{name}").exists()


@contextlib.contextmanager
def _network(client: docker.DockerClient, name: str, scope: str) -> Iterator[str]:
    """An internal network (no way out but to the host); yields its subnet."""
    network = client.networks.create(name, internal=True, labels={LABEL_DEPLOYMENT: scope})
    try:
        network.reload()
        yield network.attrs["IPAM"]["Config"][0]["Subnet"]
    finally:
        network.remove()


def remove_containers(engine: PodmanEngine) -> int:
    """Remove every container of the run (labelled with its scope), then the sessions' own
    networks (all the run's networks but its shared one); how many containers there were. The
    run's end does; a test whose containers must not outlive it (the reconciler would find
    them in the next test) calls it at its own end."""
    scope = {"label": f"{LABEL_DEPLOYMENT}={engine.label_scope}"}
    with contextlib.closing(engine_client(engine.url)) as client:
        labelled = client.api.containers(all=True, filters=scope)
        for item in labelled:
            try:
                client.api.remove_container(item["Id"], force=True, v=True)
            except docker.errors.APIError as exc:  # removed meanwhile: a 404, or a 500 here
                if "no such container" not in str(exc).lower():
                    raise
        for network in client.api.networks(filters=scope):
            if network["Name"] != engine.network:
                with contextlib.suppress(docker.errors.NotFound):
                    client.api.remove_network(network["Name"])
    return len(labelled)


@contextlib.contextmanager
def podman_service(folder: Path) -> Iterator[PodmanEngine]:
    """Podman's API service on a socket in `folder`, with a network and the desktop image."""
    if missing := missing_programs("podman", "ip", "iptables", "setpriv"):
        raise RuntimeError(f"needs {', '.join(missing)}: run scripts/podman.sh (make test does)")
    image, browser_image = session_images()
    socket = folder / "podman.sock"
    log = folder / "podman.log"
    url = f"unix://{socket}"
    scope = f"test-{secrets.token_hex(6)}"
    with contextlib.ExitStack() as stack:
        # setpriv --pdeathsig: a test run killed before its teardown does not leave the
        # service running (--time=0: it never stops on its own).
        proc = subprocess.Popen(
            ["setpriv", "--pdeathsig", "TERM", "podman", "system", "service", "--time=0", url],
            env=podman_environment(),
            stdout=stack.enter_context(log.open("ab")),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        stack.callback(stop, proc)
        _wait_until_answering(url, proc, log)
        client = stack.enter_context(contextlib.closing(engine_client(url)))
        name = f"wg-test-{secrets.token_hex(4)}"
        stack.enter_context(_guarded(SUBNET_POOL))
        subnet = stack.enter_context(_network(client, name, scope))
        engine = PodmanEngine(
            url=url,
            network=name,
            subnet=subnet,
            image=image,
            browser_image=browser_image,
            label_scope=scope,
        )
        # Runs first at the end: a network goes only once its containers have.
        stack.callback(remove_containers, engine)
        yield engine
