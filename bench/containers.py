"""Launch to ready of a desktop of one's own (a container per session), against `podman run` of
the same image by hand.

    .venv/bin/python bench/containers.py [--runs 10] [--burst 20] [--json out.json]

Run by hand (or by `make bench`), as root (rootful podman, `ip route`); it measures and never
fails. All on this machine:
1. starts Podman's Docker-compatible service on a socket of its own, with an internal network,
   the route guard for podman's subnet pool and the desktop image built from this checkout's
   sources, as the tests do (tests/support/podman.py); every container and network of the run,
   Workgate's and the anchor's, carries the run's random scope label (io.workgate.deployment);
2. recreates a scratch PostgreSQL database (`--database-url`), migrates it, flushes a scratch
   Redis database (`--redis-url`), creates `--burst` users;
3. for each of the two ways desktops are networked, one `daphne` process (production settings,
   DEBUG off) whose engine is that service (WORKGATE_CONTAINER_ENGINES, its scope as
   WORKGATE_CONTAINER_DEPLOYMENT, WORKGATE_CONTAINER_STORAGE_LIMIT=0: this storage cannot
   enforce it): `own`, the default, a network of each session's own, internal
   (WORKGATE_CONTAINER_NETWORK_INTERNAL=1); `shared`, every desktop on the run's internal
   network (WORKGATE_CONTAINER_NETWORK). Under each:
   - `--runs` times, after one warm-up of each, alternately: through Workgate, POST
     /api/workspaces/ws-linux-desktop/launch (the default Linux Desktop, a container workspace
     once an engine is set), which answers `starting`, then GET /api/sessions/<id> every 50 ms
     until `ready`: launch to ready; then, untimed by that figure, a ticket and the relay
     WebSocket until the desktop's RFB greeting comes through it; then POST .../stop, timed (it
     removes the container, and its network). By hand (the anchor): the same network by hand
     (`podman network create --internal`, podman's isolate option) for `own`, `podman run -d`
     of the workspace's image with the limits Workgate gives it (--cap-drop ALL,
     no-new-privileges, its memory and CPUs, the pids limit, VNC_PW from the environment) on
     that network, `podman inspect` for its address, its RFB greeting polled there every 50 ms
     with the provisioner's own check; then `podman rm -f` (and `podman network rm`), timed;
   - `--burst` users launch at once, one desktop each, each polling its session every 200 ms:
     the time until all are ready and each one's launch to ready; then all stop at once. The
     anchor: as many desktops at once by hand, until every greeting answers; then as many
     removals at once.
At the end, the run's containers and networks, the route and the service go (podman_service);
the scratch database is dropped.

Workgate's launch to ready over the anchor's, at p50, is the overhead of going through the
gateway (target: <= 1.2x).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from common import (
    daphne,
    drop_database,
    emit,
    latency_summary,
    machine,
    prepare_database,
    server_env,
    summary_row,
)
from launch_ready import relay_greeting

WORKSPACE = "ws-linux-desktop"
POLL_INTERVAL = 0.05  # the anchor's greeting poll, and a session's while launched alone
BURST_POLL_INTERVAL = 0.2  # per session in the burst: the readiness thread's own probe interval
READY_WITHIN = 120.0  # seconds a desktop may take before the bench calls it a failure
TARGET_RATIO = 1.2


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--burst", type=int, default=20, help="users launching at once")
    parser.add_argument(
        "--database-url", default="postgres://postgres@127.0.0.1:5432/workgate_bench"
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    parser.add_argument("--keep-database", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the results here")
    return parser.parse_args()


# --- Through Workgate -----------------------------------------------------------------------------


@dataclass
class Launched:
    answered: float | None = None  # seconds until the launch's response (`starting`)
    ready: float | None = None  # seconds until the session said `ready`
    began: float = 0.0  # perf_counter() when the launch was sent
    session_id: str = ""
    runtime_id: str = ""
    failure: str = ""


def launch_until_ready(client, poll: float) -> Launched:
    """POST the launch, then poll the session until it leaves `starting`."""
    launched = Launched(began=time.perf_counter())
    response = client.post(f"/api/workspaces/{WORKSPACE}/launch")
    launched.answered = time.perf_counter() - launched.began
    body = response.json()
    if response.status_code != 201 or body.get("status") not in ("starting", "ready"):
        launched.failure = f"launch {response.status_code}: {json.dumps(body)[:300]}"
        return launched
    launched.session_id, launched.runtime_id = body["session_id"], body["runtime_id"]
    status = body["status"]
    deadline = launched.began + READY_WITHIN
    while status == "starting" and time.perf_counter() < deadline:
        time.sleep(poll)
        status = client.get(f"/api/sessions/{launched.session_id}").json()["status"]
    if status == "ready":
        launched.ready = time.perf_counter() - launched.began
    else:
        launched.failure = f"session {launched.session_id} is {status}, not ready"
    return launched


def relayed_greeting(client, runtime_id: str) -> float | str:
    """Seconds for a ticket and the relay until the desktop's greeting, or why not."""
    began = time.perf_counter()
    ticket = client.post("/api/agents/workspace/ticket", json={"workspaceId": runtime_id})
    if ticket.status_code != 200:
        return f"ticket {ticket.status_code}: {ticket.text[:200]}"
    greeting = asyncio.run(relay_greeting(ticket.json()["vncUrl"]))
    if not greeting.startswith(b"RFB 003.00"):
        return f"relay greeted with {greeting[:12]!r}"
    return time.perf_counter() - began


def stop(client) -> tuple[float, str]:
    began = time.perf_counter()
    stopped = client.post(f"/api/workspaces/{WORKSPACE}/stop")
    took = time.perf_counter() - began
    return took, "" if stopped.status_code == 200 else f"stop {stopped.status_code}"


def workgate_once(client) -> dict:
    launched = launch_until_ready(client, POLL_INTERVAL)
    relayed = relayed_greeting(client, launched.runtime_id) if launched.ready else None
    stop_took, stop_failure = stop(client) if launched.session_id else (None, "")
    failures = [f for f in (launched.failure, stop_failure) if f]
    if isinstance(relayed, str):
        failures.append(relayed)
        relayed = None
    return {
        "answered": launched.answered,
        "ready": launched.ready,
        "relay": relayed,
        "stop": stop_took,
        "failures": failures,
    }


def workgate_burst(base_url: str, tokens: list[str]) -> dict:
    import httpx

    clients = [
        httpx.Client(base_url=base_url, headers={"x-access-token": token}, timeout=120)
        for token in tokens
    ]
    barrier = threading.Barrier(len(clients))

    def one(client) -> Launched:
        barrier.wait()
        return launch_until_ready(client, BURST_POLL_INTERVAL)

    try:
        with ThreadPoolExecutor(len(clients)) as pool:
            launched = list(pool.map(one, clients))
            stopped_at = time.perf_counter()
            live = [c for c, x in zip(clients, launched, strict=True) if x.session_id]
            stops = list(pool.map(stop, live))
            all_stopped = time.perf_counter() - stopped_at
    finally:
        for client in clients:
            client.close()
    return _burst_result(
        [x.began for x in launched],
        [x.ready for x in launched],
        answered=[x.answered for x in launched if x.answered is not None],
        stops=[took for took, _ in stops],
        all_stopped=all_stopped,
        failures=[x.failure for x in launched if x.failure] + [f for _, f in stops if f],
    )


def _burst_result(began, ready, *, stops, all_stopped, failures, answered=None) -> dict:
    done = [start + took for start, took in zip(began, ready, strict=True) if took is not None]
    result = {
        "launches": len(began),
        "ready": len(done),
        "all_ready_ms": round((max(done) - min(began)) * 1000, 1) if done else None,
        "ready_ms": latency_summary([took for took in ready if took is not None]),
        "stop_ms": latency_summary(stops),
        "all_stopped_ms": round(all_stopped * 1000, 1),
        "failures": failures,
    }
    if answered is not None:
        result["answered_ms"] = latency_summary(answered)
    return result


def through_workgate(base_url: str, token: str, runs: int, by_hand) -> tuple[dict, dict]:
    """The single launches, alternating with the anchor's runs (`by_hand()` each time)."""
    import httpx

    measured = {"answered": [], "ready": [], "relay": [], "stop": [], "failures": []}
    anchor = {"ready": [], "remove": [], "failures": []}
    with httpx.Client(base_url=base_url, headers={"x-access-token": token}, timeout=120) as c:
        for run in range(runs + 1):  # the first run of each warms up and is not counted
            once = workgate_once(c)
            hand = by_hand()
            measured["failures"] += once.pop("failures")
            anchor["failures"] += hand.pop("failures")
            if run == 0:
                continue
            for key, value in once.items():
                if value is not None:
                    measured[key].append(value)
            for key, value in hand.items():
                if value is not None:
                    anchor[key].append(value)
    return measured, anchor


# --- By hand ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    """What the provisioner gives the workspace's container, as podman's options."""

    image: str
    memory: int
    cpus: str
    pids: int
    resolution: str


class ByHand:
    """`podman run` of the workspace's image by hand, as an operator without Workgate would:
    on `network`, or on a network of its own made for it (None)."""

    def __init__(self, engine, limits: Limits, network: str | None):
        from sessions_app.provisioners.container import LABEL_DEPLOYMENT
        from tests.support.podman import podman_environment

        self.engine = engine
        self.limits = limits
        self.network = network
        self.label = f"{LABEL_DEPLOYMENT}={engine.label_scope}"
        self.environment = podman_environment()

    def _podman(self, *args: str, env: dict | None = None) -> str:
        done = subprocess.run(
            ["podman", *args],
            env=env or self.environment,
            capture_output=True,
            text=True,
            timeout=READY_WITHIN,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"podman {args[0]} exited {done.returncode}: {done.stderr[-300:]}")
        return done.stdout.strip()

    def start(self) -> tuple[float, str, str]:
        """Seconds from the first podman command until the desktop greets at its address; its
        id, and the name of the network made for it (empty: none)."""
        from sessions_app.provisioners.container import new_password
        from sessions_app.provisioners.static import rfb_greets

        limits = self.limits
        name = f"wg-bench-{secrets.token_hex(6)}"
        began = time.perf_counter()
        network = self.network
        if network is None:
            network = self._podman(
                *("network", "create", "--internal", "--opt", "isolate=true"),
                *("--label", self.label, name),
            )
        container = self._podman(
            *("run", "--detach", "--name", name, "--label", self.label, "--network", network),
            *("--cap-drop", "ALL", "--security-opt", "no-new-privileges"),
            *("--memory", str(limits.memory), "--memory-swap", str(limits.memory)),
            *("--cpus", limits.cpus, "--pids-limit", str(limits.pids)),
            *("--env", "VNC_PW", "--env", f"VNC_RESOLUTION={limits.resolution}"),
            limits.image,
            env={**self.environment, "VNC_PW": new_password("rfb")},
        )
        networks = json.loads(
            self._podman("inspect", "--format", "{{json .NetworkSettings.Networks}}", container)
        )
        target = f"{networks[network]['IPAddress']}:5900"
        deadline = began + READY_WITHIN
        while not rfb_greets(target, 1.0):
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{container[:12]} did not greet at {target}")
            time.sleep(POLL_INTERVAL)
        return time.perf_counter() - began, container, "" if self.network else network

    def image_id(self) -> str:
        return self._podman("image", "inspect", "--format", "{{.Id}}", self.limits.image)[:12]

    def remove(self, container: str, network: str = "") -> float:
        began = time.perf_counter()
        self._podman("rm", "--force", container)
        if network:
            self._podman("network", "rm", network)
        return time.perf_counter() - began

    def once(self) -> dict:
        try:
            ready, container, network = self.start()
        except (RuntimeError, TimeoutError, subprocess.TimeoutExpired) as exc:
            return {"ready": None, "remove": None, "failures": [f"by hand: {exc}"]}
        return {"ready": ready, "remove": self.remove(container, network), "failures": []}

    def burst(self, count: int) -> dict:
        barrier = threading.Barrier(count)

        def one(_index: int):
            barrier.wait()
            began = time.perf_counter()
            try:
                ready, container, network = self.start()
            except (RuntimeError, TimeoutError, subprocess.TimeoutExpired) as exc:
                return began, None, ("", ""), f"by hand: {exc}"
            return began, ready, (container, network), ""

        with ThreadPoolExecutor(count) as pool:
            started = list(pool.map(one, range(count)))
            removed_at = time.perf_counter()
            made = [made for _, _, made, _ in started if made[0]]
            removes = list(pool.map(lambda made: self.remove(*made), made))
            all_removed = time.perf_counter() - removed_at
        return _burst_result(
            [began for began, _, _, _ in started],
            [ready for _, ready, _, _ in started],
            stops=removes,
            all_stopped=all_removed,
            failures=[failure for _, _, _, failure in started if failure],
        )


def limits_of(workspace_id: str) -> Limits:
    """The limits the provisioner gives the workspace (as the Daphne process reads them)."""
    from sessions_app.provisioners.container import nano_cpus, size_bytes
    from workspaces.models import Workspace

    workspace = Workspace.objects.get(pk=workspace_id)
    return Limits(
        image=workspace.container_image,
        memory=size_bytes(workspace.memory),
        cpus=f"{nano_cpus(workspace.cpu) / 10**9:g}",
        pids=1024,  # WORKGATE_CONTAINER_PIDS_LIMIT's default, which the server keeps
        resolution="1280x800",  # WORKGATE_CONTAINER_RESOLUTION's default
    )


def podman_version() -> str:
    done = subprocess.run(
        ["podman", "version", "--format", "{{.Client.Version}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or "unknown"


# --- The benchmark ----------------------------------------------------------------------------


def _ratio(value: float | None, anchor: float | None) -> float | None:
    if value is None or anchor is None or value != value or anchor != anchor or not anchor:
        return None
    return round(value / anchor, 2)


# How desktops are networked: a network of each session's own (the default), or one shared.
MODES = {
    "own": "a network of each session's own",
    "shared": "one shared network",
}


def measure_mode(mode: str, env: dict, engine, tokens: list[str], args) -> tuple[dict, ByHand]:
    """One Daphne process networking desktops as `mode` says: the single launches against the
    anchor's, then the burst against the anchor's."""
    import httpx

    if mode == "own":
        env = {**env, "WORKGATE_CONTAINER_NETWORK_INTERNAL": "1"}
    else:
        env = {**env, "WORKGATE_CONTAINER_NETWORK": engine.network}
    with daphne(env) as (base_url, _pid):
        # The catalog, seeded by the server with an engine set: the Linux Desktop is a
        # container workspace, whose limits the anchor copies.
        with httpx.Client(base_url=base_url, headers={"x-access-token": tokens[0]}) as c:
            c.get("/api/workspaces").raise_for_status()
        hand = ByHand(engine, limits_of(WORKSPACE), None if mode == "own" else engine.network)
        measured, anchor = through_workgate(base_url, tokens[0], args.runs, hand.once)
        burst = workgate_burst(base_url, tokens[: args.burst]) if args.burst else None
        burst_by_hand = hand.burst(args.burst) if args.burst else None
    launch, bare = latency_summary(measured["ready"]), latency_summary(anchor["ready"])
    result = {
        "network": MODES[mode],
        "launch_answered_ms": latency_summary(measured["answered"]),
        "launch_ms": launch,
        "ticket_and_relay_greeting_ms": (
            latency_summary(measured["relay"]) if measured["relay"] else None
        ),
        "stop_ms": latency_summary(measured["stop"]),
        "by_hand_ms": bare,
        "by_hand_remove_ms": latency_summary(anchor["remove"]),
        "ratio_p50": _ratio(launch["p50"], bare["p50"]),
        "ratio_p99": _ratio(launch["p99"], bare["p99"]),
        "burst": burst,
        "burst_by_hand": burst_by_hand,
        "burst_ratio": _ratio(
            (burst or {}).get("all_ready_ms"), (burst_by_hand or {}).get("all_ready_ms")
        ),
        "failures": measured["failures"] + anchor["failures"],
    }
    return result, hand


def summary_rows(mode: str, result: dict, burst: int) -> list[dict]:
    launch, bare = result["launch_ms"], result["by_hand_ms"]
    where = MODES[mode]
    rows = []
    for quantile in ("p50", "p99"):
        ratio = result[f"ratio_{quantile}"]
        target = {}
        if quantile == "p50":  # the issue's target is on the median
            target = {
                "target": f"<= {TARGET_RATIO}x",
                "met": ratio is not None and ratio <= TARGET_RATIO,
            }
        rows.append(
            summary_row(
                f"launch to ready, container desktop on {where}, {quantile}",
                launch[quantile],
                "ms",
                anchor=f"podman run by hand, to its greeting, {quantile}",
                anchor_value=bare[quantile],
                ratio=ratio,
                **target,
            )
        )
    if result["burst"] and result["burst_by_hand"]:
        rows.append(
            summary_row(
                f"{burst} launches at once on {where}, until all are ready",
                result["burst"]["all_ready_ms"],
                "ms",
                anchor=f"{burst} podman run at once by hand",
                anchor_value=result["burst_by_hand"]["all_ready_ms"],
                ratio=result["burst_ratio"],
            )
        )
    return rows


def main() -> None:
    args = parse_args()
    # A TERM (run_all's timeout, a kill from a shell) unwinds like ^C: the containers, the
    # networks, the route and the service are removed on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    env = server_env(
        database_url=args.database_url,
        redis_url=args.redis_url,
        WORKGATE_LAUNCH_RATE="1000/m",
        WORKGATE_TICKET_RATE="1000/m",
        WORKGATE_CONTAINER_STORAGE_LIMIT="0",
    )
    prepare_database(env)
    from accounts.models import User
    from accounts.tokens import issue_tokens
    from tests.support.podman import podman_service

    users = [
        User.objects.create_user(email=f"bench-container-{n}@example.com", password=None)
        for n in range(max(args.burst, 1))
    ]
    tokens = [issue_tokens(user, mfa=False)["token"] for user in users]
    modes = {}
    try:
        with (
            tempfile.TemporaryDirectory(prefix="workgate-bench-podman-") as folder,
            podman_service(Path(folder)) as engine,
        ):
            env.update(
                WORKGATE_CONTAINER_ENGINES=engine.url,
                WORKGATE_CONTAINER_DEPLOYMENT=engine.label_scope,
            )
            for mode in MODES:
                modes[mode], hand = measure_mode(mode, env, engine, tokens, args)
            image_id = hand.image_id()
    finally:
        if not args.keep_database:
            from django.db import connections

            connections.close_all()
            drop_database(args.database_url)

    limits = hand.limits
    results = {
        "benchmark": "containers",
        "runs": args.runs,
        "image": limits.image,
        "image_id": image_id,
        "limits": {"memory_bytes": limits.memory, "cpus": limits.cpus, "pids": limits.pids},
        "engine": f"podman {podman_version()} system service (Docker API 1.41)",
        "modes": modes,
        # The default's figures, for the summary's first row.
        "ratio_p50": modes["own"]["ratio_p50"],
        "machine": machine(),
        "summary": [
            row for mode, result in modes.items() for row in summary_rows(mode, result, args.burst)
        ],
    }
    emit(results, args.json)


if __name__ == "__main__":
    main()
