"""Desktop ticket minting against a trivial authenticated endpoint, on one Daphne process.

    .venv/bin/python bench/tickets.py [--concurrency 32] [--duration 10] [--rounds 3] [--json F]

Run by hand (or by `make bench`); it measures and never fails. All on loopback:
1. recreates a scratch PostgreSQL database (`--database-url`, default workgate_bench), migrates
   it, flushes a scratch Redis database (`--redis-url`, default db 12);
2. starts a tiny RFB server (it greets with "RFB 003.008" like any VNC server) and, through the
   ORM and the real services, creates a user, a `static` workspace whose vnc_target is that
   server, and a launched, ready session of it;
3. starts one `daphne` process (production settings, DEBUG off, Redis cache and channel layer)
   with WORKGATE_TICKET_RATE raised so the rate limit counts but never refuses;
4. drives both endpoints with the same client and the same number of keep-alive connections:
   `GET /api/auth/me` (the baseline: token authentication, one user query, a small JSON body) and
   `POST /api/agents/workspace/ticket` (the same, plus the Redis rate-limit counter, the runtime
   lookup, signing a JWT, and one transaction inserting the ticket row and its audit entry on the
   hash chain). First one connection at a time (unloaded latency), then `--rounds` alternating
   rounds of `--duration` seconds each at `--concurrency` connections; each figure is the median
   over the rounds.

The client is wrk when it is installed (a C load generator, light on the CPU the server needs on
a small machine), else an httpx async client in this process.

Target (issue 8): ticket p50 <= 2x the trivial endpoint's p50 at the same concurrency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import socketserver
import statistics
import subprocess
import tempfile
import threading
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

ME_PATH = "/api/auth/me"
TICKET_PATH = "/api/agents/workspace/ticket"
TARGET_RATIO = 2.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=32, help="keep-alive connections")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serial-duration", type=float, default=5.0)
    parser.add_argument("--client", choices=("auto", "wrk", "httpx"), default="auto")
    parser.add_argument(
        "--database-url", default="postgres://postgres@127.0.0.1:5432/workgate_bench"
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    parser.add_argument("--keep-database", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the results here")
    return parser.parse_args()


# --- A desktop that only greets ------------------------------------------------------------------


class _Greeter(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.sendall(b"RFB 003.008\n")
        self.request.settimeout(5)
        try:
            while self.request.recv(4096):
                pass
        except OSError:
            pass


class RfbGreeter(socketserver.ThreadingTCPServer):
    """Enough of a VNC server for the static provisioner's readiness probe."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Greeter)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.shutdown()
        self.server_close()


def create_ready_session(greeter_port: int) -> tuple[str, str]:
    """A user with a ready session of a static desktop: (access token, runtime id)."""
    from accounts.models import User
    from accounts.tokens import issue_tokens
    from core.network import Origin
    from sessions_app.services import session_launch
    from workspaces.models import Workspace

    user = User.objects.create_user(email="bench-tickets@example.com", password=None)
    workspace = Workspace.objects.create(
        name="Bench desktop",
        type=Workspace.Type.LINUX,
        description="A greeting-only RFB server for the ticket benchmark.",
        connection_type=Workspace.ConnectionType.VNC,
        provisioner=Workspace.Provisioner.STATIC,
        vnc_target=f"tcp://127.0.0.1:{greeter_port}",
        rfb_password="bench-pw",  # noqa: S106 - a throwaway desktop on loopback
        requires_netbird=False,
    )
    session, _ = session_launch(
        user=user,
        workspace_id=workspace.id,
        origin=Origin(ip="127.0.0.1", user_agent="bench/tickets"),
        mfa_verified=False,
    )
    if session.status != "ready":
        raise RuntimeError(f"the bench session is {session.status}, not ready")
    return issue_tokens(user, mfa=False)["token"], session.runtime_id


# --- Load: wrk ------------------------------------------------------------------------------------

_WRK_SCRIPT = """
wrk.method = {method}
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
wrk.headers["x-access-token"] = {token}

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT {{\\"requests\\":%d,\\"duration_us\\":%d,\\"non2xx\\":%d,\\"errors\\":%d," ..
    "\\"p50\\":%d,\\"p90\\":%d,\\"p99\\":%d,\\"max\\":%d,\\"mean\\":%.1f}}\\n",
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
"""


def _lua(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid Lua string literal for these values


def wrk_run(base_url, method, path, body, token, *, connections, duration) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(
            _WRK_SCRIPT.format(
                method=_lua(method), body=_lua(body) if body else "nil", token=_lua(token)
            )
        )
    try:
        completed = subprocess.run(
            [
                "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{max(1, round(duration))}s",
                "--timeout",
                "10s",
                "-s",
                script.name,
                base_url + path,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        Path(script.name).unlink()
    match = re.search(r"^RESULT (\{.*\})$", completed.stdout, re.M)
    if match is None:
        raise RuntimeError(f"wrk printed no result:\n{completed.stdout}\n{completed.stderr}")
    raw = json.loads(match[1])
    seconds = raw["duration_us"] / 1e6
    return {
        "requests": raw["requests"],
        "failed": raw["non2xx"] + raw["errors"],
        "rps": round(raw["requests"] / seconds, 1),
        "p50": round(raw["p50"] / 1000, 2),
        "p90": round(raw["p90"] / 1000, 2),
        "p99": round(raw["p99"] / 1000, 2),
        "max": round(raw["max"] / 1000, 2),
        "mean": round(raw["mean"] / 1000, 2),
    }


# --- Load: httpx ----------------------------------------------------------------------------------


async def _httpx_load(base_url, method, path, body, token, connections, duration) -> dict:
    import httpx

    latencies: list[float] = []
    failed = 0
    headers = {"x-access-token": token, "Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=10.0) as client:
        deadline = time.perf_counter() + duration

        async def worker():
            nonlocal failed
            while time.perf_counter() < deadline:
                began = time.perf_counter()
                try:
                    response = await client.request(method, path, content=body, headers=headers)
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - began)
                failed += not ok

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        wall = time.perf_counter() - began
    summary = latency_summary(latencies)
    return {
        "requests": len(latencies),
        "failed": failed,
        "rps": round(len(latencies) / wall, 1),
        **{key: summary[key] for key in ("p50", "p90", "p99", "max", "mean")},
    }


def httpx_run(base_url, method, path, body, token, *, connections, duration) -> dict:
    return asyncio.run(_httpx_load(base_url, method, path, body, token, connections, duration))


# --- The benchmark --------------------------------------------------------------------------------


def median_of(rounds: list[dict]) -> dict:
    keys = ("rps", "p50", "p90", "p99", "max", "mean")
    merged = {key: round(statistics.median(r[key] for r in rounds), 2) for key in keys}
    merged["requests"] = sum(r["requests"] for r in rounds)
    merged["failed"] = sum(r["failed"] for r in rounds)
    merged["rounds"] = rounds
    return merged


def main() -> None:
    args = parse_args()
    client = args.client
    if client == "auto":
        client = "wrk" if shutil.which("wrk") else "httpx"
    load = wrk_run if client == "wrk" else httpx_run

    env = server_env(
        database_url=args.database_url,
        redis_url=args.redis_url,
        # Counted on every request as in production, but never the limit of this measurement.
        WORKGATE_TICKET_RATE="100000000/s",
    )
    prepare_database(env)
    with RfbGreeter() as greeter:
        token, runtime_id = create_ready_session(greeter.server_address[1])
        body = json.dumps({"workspaceId": runtime_id})
        endpoints = {
            "trivial": ("GET", ME_PATH, ""),
            "ticket": ("POST", TICKET_PATH, body),
        }
        with daphne(env) as (base_url, _pid):
            # Warm up both paths (imports, connection pools, the first JWT) before measuring.
            for method, path, payload in endpoints.values():
                load(base_url, method, path, payload, token, connections=4, duration=2)
            serial = {
                name: load(base_url, *spec, token, connections=1, duration=args.serial_duration)
                for name, spec in endpoints.items()
            }
            rounds: dict[str, list[dict]] = {name: [] for name in endpoints}
            for _ in range(args.rounds):
                for name, spec in endpoints.items():
                    rounds[name].append(
                        load(
                            base_url,
                            *spec,
                            token,
                            connections=args.concurrency,
                            duration=args.duration,
                        )
                    )
        from vnc_proxy.models import Ticket

        tickets_stored = Ticket.objects.count()

    if not args.keep_database:
        from django.db import connections

        connections.close_all()
        drop_database(args.database_url)

    trivial, ticket = median_of(rounds["trivial"]), median_of(rounds["ticket"])
    ratio_p50 = round(ticket["p50"] / trivial["p50"], 2)
    ratio_p99 = round(ticket["p99"] / trivial["p99"], 2)
    ratio_rps = round(ticket["rps"] / trivial["rps"], 2)
    results = {
        "benchmark": "tickets",
        "client": client,
        "concurrency": args.concurrency,
        "duration_s": args.duration,
        "rounds": args.rounds,
        "trivial": {"endpoint": f"GET {ME_PATH}", **trivial},
        "ticket": {"endpoint": f"POST {TICKET_PATH}", **ticket},
        "serial": serial,
        "tickets_stored": tickets_stored,
        "ratio_p50": ratio_p50,
        "ratio_p99": ratio_p99,
        "ratio_rps": ratio_rps,
        "serial_ratio_p50": round(serial["ticket"]["p50"] / serial["trivial"]["p50"], 2),
        "machine": machine(),
        "summary": [
            summary_row(
                f"ticket minting p50 ({args.concurrency} connections)",
                ticket["p50"],
                "ms",
                anchor=f"GET {ME_PATH} p50",
                anchor_value=trivial["p50"],
                ratio=ratio_p50,
                target=f"<= {TARGET_RATIO:g}x",
                met=ratio_p50 <= TARGET_RATIO and ticket["failed"] == 0,
            ),
            summary_row(
                "tickets/s (one process)",
                ticket["rps"],
                "/s",
                anchor=f"GET {ME_PATH} req/s",
                anchor_value=trivial["rps"],
                ratio=ratio_rps,
            ),
            summary_row(
                f"ticket minting p99 ({args.concurrency} connections)",
                ticket["p99"],
                "ms",
                anchor=f"GET {ME_PATH} p99",
                anchor_value=trivial["p99"],
                ratio=ratio_p99,
            ),
        ],
    }
    emit(results, args.json)


if __name__ == "__main__":
    main()
