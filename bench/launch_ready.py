"""Launch-to-ready latency of a local desktop (Xvfb + x11vnc + xterm) through the API.

    .venv/bin/python bench/launch_ready.py [--runs 10] [--json out.json]

Run by hand (or by `make bench`); it measures and never fails. All on loopback:
1. recreates a scratch PostgreSQL database (`--database-url`, default workgate_bench), migrates
   it, flushes a scratch Redis database (`--redis-url`, default db 12), creates a user;
2. starts one `daphne` process (production settings, DEBUG off, WORKGATE_LOCAL_DESKTOP=1);
3. `--runs` times: POST /api/workspaces/ws-linux-desktop/launch, timed until its response, which
   comes once the desktop's VNC server greets (the launch answers with `status: ready`); checks
   GET /api/agents/workspace/me says ready; then, untimed by the launch figure, mints a ticket and
   opens the relay WebSocket until the desktop's "RFB 003.008" greeting arrives through it
   (ticket + relay: the rest of what a viewer waits for); then stops the workspace (timed too);
4. the anchor: the same desktop started by hand `--runs` times, without Workgate, in the
   provisioner's order: Xvfb with -displayfd, x11vnc on a free port with a password file, polled
   for its greeting every 50 ms as the provisioner polls, then xterm; then killed.

The launch's p50 over the anchor's p50 is Workgate's overhead on top of starting the desktop
(the issue sets no target for it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time
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

WORKSPACE = "ws-linux-desktop"
POLL_INTERVAL = 0.05  # the local_desktop provisioner's own polling interval


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument(
        "--database-url", default="postgres://postgres@127.0.0.1:5432/workgate_bench"
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    parser.add_argument("--keep-database", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the results here")
    return parser.parse_args()


# --- Through Workgate -----------------------------------------------------------------------------


async def relay_greeting(vnc_url: str) -> bytes:
    from websockets.asyncio.client import connect

    async with connect(vnc_url, subprotocols=["binary"], open_timeout=10) as websocket:
        return await asyncio.wait_for(websocket.recv(), 10)


def through_workgate(base_url: str, token: str, runs: int) -> dict:
    import httpx

    headers = {"x-access-token": token}
    launches, stops, relays, failures = [], [], [], []
    with httpx.Client(base_url=base_url, headers=headers, timeout=60) as client:
        client.get("/api/workspaces").raise_for_status()  # seeds the default catalog
        for run in range(runs + 1):  # the first run warms up and is not counted
            began = time.perf_counter()
            response = client.post(f"/api/workspaces/{WORKSPACE}/launch")
            launched = time.perf_counter() - began
            body = response.json()
            if response.status_code != 201 or body.get("status") != "ready":
                failures.append(f"launch {response.status_code}: {body}")
                client.post(f"/api/workspaces/{WORKSPACE}/stop")
                continue
            me = client.get("/api/agents/workspace/me").json()
            runtime = ((me.get("agent") or {}).get("workspace") or {}).get("runtime") or {}
            if runtime.get("status") != "ready":
                failures.append(f"/api/agents/workspace/me says {runtime.get('status')}")

            relay_began = time.perf_counter()
            ticket = client.post(
                "/api/agents/workspace/ticket", json={"workspaceId": runtime.get("workspaceId")}
            )
            relayed = None
            if ticket.status_code == 200:
                greeting = asyncio.run(relay_greeting(ticket.json()["vncUrl"]))
                if greeting.startswith(b"RFB 003.00"):
                    relayed = time.perf_counter() - relay_began
                else:
                    failures.append(f"relay greeted with {greeting[:12]!r}")
            else:
                failures.append(f"ticket {ticket.status_code}: {ticket.text[:200]}")

            stop_began = time.perf_counter()
            stopped = client.post(f"/api/workspaces/{WORKSPACE}/stop")
            stop_took = time.perf_counter() - stop_began
            if stopped.status_code != 200:
                failures.append(f"stop {stopped.status_code}: {stopped.text[:200]}")
            if run == 0:
                continue
            launches.append(launched)
            stops.append(stop_took)
            if relayed is not None:
                relays.append(relayed)
    return {"launch": launches, "relay": relays, "stop": stops, "failures": failures}


# --- By hand --------------------------------------------------------------------------------------


def _rfb_greets(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as conn:
            conn.settimeout(1.0)
            return conn.recv(12).startswith(b"RFB 003.00")
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bare_desktop_start(directory: Path) -> float:
    """Start Xvfb + x11vnc + xterm in the provisioner's order (xterm once the VNC server greets);
    seconds until then."""
    from sessions_app.provisioners.local_desktop import vnc_password_file, xauthority_cookie

    xauthority, rfbauth = directory / "Xauthority", directory / "rfbauth"
    xauthority.write_bytes(xauthority_cookie(os.urandom(16)))
    rfbauth.write_bytes(vnc_password_file("benchpw1"))
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(directory),
        "XAUTHORITY": str(xauthority),
    }
    began = time.perf_counter()
    read_end, write_end = os.pipe()
    xvfb = subprocess.Popen(
        [
            *(shutil.which("Xvfb"), "-displayfd", str(write_end), "-screen", "0", "1280x800x24"),
            *("-auth", str(xauthority), "-nolisten", "tcp", "-noreset"),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        pass_fds=(write_end,),
        process_group=0,
    )
    try:
        os.close(write_end)
        answer = b""
        while not answer.endswith(b"\n"):
            if not select.select([read_end], [], [], 15)[0]:
                raise TimeoutError("Xvfb did not start")
            chunk = os.read(read_end, 32)
            if not chunk:
                raise RuntimeError("Xvfb exited")
            answer += chunk
        os.close(read_end)
        display = int(answer.strip())
        port = _free_port()
        subprocess.Popen(
            [
                *(shutil.which("x11vnc"), "-display", f":{display}", "-auth", str(xauthority)),
                *("-rfbauth", str(rfbauth), "-rfbport", str(port), "-localhost", "-no6"),
                *("-forever", "-shared", "-norc", "-nolookup"),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            process_group=xvfb.pid,
        )
        deadline = time.monotonic() + 15
        while not _rfb_greets(port):
            if time.monotonic() > deadline:
                raise TimeoutError("x11vnc did not greet")
            time.sleep(POLL_INTERVAL)
        subprocess.Popen(
            [shutil.which("xterm")],
            env={**env, "DISPLAY": f":{display}"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            process_group=xvfb.pid,
        )
        return time.perf_counter() - began
    finally:
        os.killpg(xvfb.pid, signal.SIGTERM)
        xvfb.wait(10)
        time.sleep(0.2)  # let x11vnc and xterm exit before the next start
        with contextlib.suppress(ProcessLookupError):
            os.killpg(xvfb.pid, signal.SIGKILL)


def by_hand(runs: int) -> list[float]:
    took = []
    for run in range(runs + 1):
        with tempfile.TemporaryDirectory(prefix="workgate-bench-") as directory:
            seconds = bare_desktop_start(Path(directory))
        if run:
            took.append(seconds)
    return took


# --- The benchmark --------------------------------------------------------------------------------


def main() -> None:
    args = parse_args()
    env = server_env(
        database_url=args.database_url,
        redis_url=args.redis_url,
        WORKGATE_LOCAL_DESKTOP="1",
        WORKGATE_TICKET_RATE="1000/m",
        WORKGATE_LAUNCH_RATE="1000/m",
        WORKGATE_RUNTIME_DIR=tempfile.mkdtemp(prefix="workgate-bench-runtime-"),
    )
    prepare_database(env)
    from accounts.models import User
    from accounts.tokens import issue_tokens

    user = User.objects.create_user(email="bench-launch@example.com", password=None)
    token = issue_tokens(user, mfa=False)["token"]
    with daphne(env) as (base_url, _pid):
        measured = through_workgate(base_url, token, args.runs)
    anchor = by_hand(args.runs)
    shutil.rmtree(env["WORKGATE_RUNTIME_DIR"], ignore_errors=True)
    if not args.keep_database:
        from django.db import connections

        connections.close_all()
        drop_database(args.database_url)

    launch, bare = latency_summary(measured["launch"]), latency_summary(anchor)
    relay = latency_summary(measured["relay"]) if measured["relay"] else None
    stop = latency_summary(measured["stop"])
    ratio = round(launch["p50"] / bare["p50"], 2) if launch["n"] else None
    results = {
        "benchmark": "launch_ready",
        "runs": args.runs,
        "launch_ms": launch,
        "ticket_and_relay_greeting_ms": relay,
        "stop_ms": stop,
        "bare_desktop_ms": bare,
        "ratio_p50": ratio,
        "failures": measured["failures"],
        "machine": machine(),
        "summary": [
            summary_row(
                "launch to ready, local desktop p50",
                launch["p50"],
                "ms",
                anchor="same desktop started by hand p50",
                anchor_value=bare["p50"],
                ratio=ratio,
            ),
            summary_row(
                "launch to ready, local desktop p99",
                launch["p99"],
                "ms",
                anchor="same desktop started by hand p99",
                anchor_value=bare["p99"],
                ratio=round(launch["p99"] / bare["p99"], 2) if launch["n"] else None,
            ),
        ],
    }
    if relay is not None:
        results["summary"].append(
            summary_row("ready to RFB greeting via ticket + relay p50", relay["p50"], "ms")
        )
    emit(results, args.json)


if __name__ == "__main__":
    main()
