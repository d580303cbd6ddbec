"""Web apps through the gateway (issue 21): the same JupyterLab behind nginx's proxy_pass and
behind Workgate's app proxy (one Daphne process), side by side in one run.

    .venv/bin/python bench/app_proxy.py [--seconds 5] [--rounds 2] [--size-mb 100]
                                        [--echoes 500] [--json F]

Run by hand (or by `make bench`); it measures and never fails. All on loopback:
1. recreates a scratch PostgreSQL database (`--database-url`, default workgate_bench_apps),
   migrates it, flushes a scratch Redis database (`--redis-url`, default db 12);
2. starts one JupyterLab from .venv-apps (tests/support/apps.py, as the tests run it) with a
   `--size-mb` file in its root;
3. starts nginx (one worker) with the directives docs/deployment.md gives the apps domain:
   an upstream with `keepalive 32`, `proxy_http_version 1.1`, `proxy_buffering off`,
   `proxy_request_buffering off`, the Upgrade map and the Host passed through, its
   `proxy_pass` straight to the lab;
4. starts one Daphne process (production settings, DEBUG off, Redis channel layer) with
   WORKGATE_APPS_DOMAIN=apps.localhost:<its port> and WORKGATE_APP_UPSTREAM_NETWORKS=127.0.0.0/8;
   through the API a user launches a `web` workspace whose url is the lab (its token as the
   workspace's app credential), takes an app ticket and spends it for the app cookie; every
   request then goes to `<runtime-id>.apps.localhost:<port>` with that cookie;
5. measures, for the lab directly (the floor), through nginx and through Workgate, alternating
   the three within each of `--rounds` rounds:
   - small answers: `GET /api` (a 21-byte JSON) with wrk for `--seconds` at c=1 (one thread)
     and at c=32: requests/s, p50 and p99 (µs);
   - a large body: `GET /files/big.bin` (`--size-mb`) read by curl to /dev/null: MB/s, and the
     serving process's RSS before and after (Daphne's; nginx's);
   - WebSocket round trip: a lab terminal running `stty -echo; cat` (a real app echo through a
     pty); `--echoes` lines after 50 of warm-up, each timed from the send to its echo;
   each figure is the median over the rounds, and each ratio to nginx the median of the
   rounds' own ratios (Workgate and nginx measured moments apart).

Targets (issue 21): large-body throughput >= 0.5x nginx's; p50 <= 2x nginx's at c=1 and c=32
(on loopback nginx adds next to nothing to the lab's own time, so "added latency <= 2x nginx's"
is read as the ratio of the p50s; the µs Workgate adds over nginx is reported beside it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import (
    DAPHNE,
    ROOT,
    drop_database,
    emit,
    free_port,
    machine,
    percentile,
    prepare_database,
    rss_kib,
    running,
    server_env,
    summary_row,
)

from tests.support import apps  # common puts the checkout on sys.path

ORIGIN_COOKIE = "__Host-workgate-app"  # app_proxy/admission.py cookie_name("origin", ...)
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
MB = 1024 * 1024

NGINX_CONF = """
daemon off;
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;

    upstream lab {{
        server 127.0.0.1:{upstream};
        keepalive 32;
    }}
    map $http_upgrade $app_connection {{
        default upgrade;
        ""      "";
    }}
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 0;
        proxy_http_version 1.1;
        proxy_set_header Host $http_host;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection $app_connection;
        proxy_buffering off;
        proxy_request_buffering off;
        proxy_read_timeout 1h;
        proxy_send_timeout 1h;
        location / {{
            proxy_pass http://lab;
        }}
    }}
}}
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--echoes", type=int, default=500)
    parser.add_argument(
        "--database-url", default="postgres://postgres@127.0.0.1:5432/workgate_bench_apps"
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    parser.add_argument("--keep-database", action="store_true")
    parser.add_argument("--json", type=Path)
    return parser.parse_args()


class Target:
    """One way to the lab: where to connect, and the Host, Origin and headers a client sends."""

    def __init__(self, name: str, port: int, host: str, headers: dict[str, str], pid: int):
        self.name, self.port, self.host, self.headers, self.pid = name, port, host, headers, pid

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def origin(self) -> str:
        return f"http://{self.host}"

    def all_headers(self) -> dict[str, str]:
        return {"Host": self.host, **self.headers}


# --- Small answers: wrk --------------------------------------------------------------------------

_WRK_SCRIPT = """
{headers}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT {{\\"requests\\":%d,\\"duration_us\\":%d,\\"non2xx\\":%d,\\"errors\\":%d," ..
    "\\"p50\\":%d,\\"p99\\":%d}}\\n",
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def wrk(target: Target, path: str, *, connections: int, seconds: float) -> dict:
    headers = "\n".join(
        f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in target.all_headers().items()
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_WRK_SCRIPT.format(headers=headers))
    threads = 1 if connections == 1 else 2
    try:
        completed = subprocess.run(
            [
                *("wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s"),
                *("--timeout", "10s", "-s", script.name, target.base + path),
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
    return {
        "rps": round(raw["requests"] / (raw["duration_us"] / 1e6), 1),
        "p50_us": raw["p50"],
        "p99_us": raw["p99"],
        "failed": raw["non2xx"] + raw["errors"],
    }


# --- A large body: curl -------------------------------------------------------------------------


def download(target: Target, path: str, size: int) -> dict:
    argv = ["curl", "-sS", "-o", "/dev/null", "-w", "%{size_download} %{time_total}"]
    for key, value in target.all_headers().items():
        argv += ["-H", f"{key}: {value}"]
    before = rss_kib(target.pid)
    out = subprocess.run([*argv, target.base + path], capture_output=True, text=True, check=True)
    after = rss_kib(target.pid)
    got, took = out.stdout.split()
    if int(got) != size:
        raise RuntimeError(f"{target.name}: {got} bytes of {size}")
    return {
        "mb_per_s": round(size / MB / float(took), 1),
        "rss_before_mib": round(before / 1024, 1),
        "rss_after_mib": round(after / 1024, 1),
    }


# --- WebSocket round trip: a lab terminal --------------------------------------------------------


async def echo_times(target: Target, lab: apps.JupyterApp, count: int) -> list[float]:
    import httpx
    from websockets.asyncio.client import connect

    headers = target.all_headers()
    async with httpx.AsyncClient(base_url=target.base, headers=headers, timeout=30) as client:
        made = await client.post(lab.path("api/terminals"), headers={"Origin": target.origin})
        made.raise_for_status()
        name = made.json()["name"]
    ws_headers = {k: v for k, v in headers.items() if k != "Host"}
    # The URL names the target's host (the Host header); the socket goes to loopback.
    url = f"ws://{target.host}{lab.path(f'terminals/websocket/{name}')}"
    times: list[float] = []
    async with connect(
        url,
        host="127.0.0.1",
        port=target.port,
        additional_headers=ws_headers,
        origin=target.origin,
        compression=None,
        max_size=None,
    ) as ws:

        async def until(marker: str) -> None:
            seen = ""
            while marker not in seen:
                message = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if message[0] == "stdout":
                    seen += message[1]

        await ws.send(json.dumps(["stdin", "stty -echo; cat\r"]))
        await ws.send(json.dumps(["stdin", "ready-0\r"]))
        await until("ready-0")
        for n in range(count + 50):
            line = f"e{n:06d}x"
            began = time.perf_counter()
            await ws.send(json.dumps(["stdin", line + "\r"]))
            await until(line)
            if n >= 50:
                times.append(time.perf_counter() - began)
    async with httpx.AsyncClient(base_url=target.base, headers=headers, timeout=30) as client:
        await client.delete(lab.path(f"api/terminals/{name}"), headers={"Origin": target.origin})
    return times


# --- The three ways to the lab -------------------------------------------------------------------


@contextlib.contextmanager
def nginx_in_front(lab: apps.JupyterApp, folder: Path):
    port = free_port()
    conf = folder / "nginx.conf"
    conf.write_text(NGINX_CONF.format(folder=folder, upstream=lab.port, port=port))
    with running([NGINX, "-p", folder, "-e", folder / "error.log", "-c", conf], port=port) as proc:
        yield Target("nginx", port, f"127.0.0.1:{port}", lab.authorization, proc.pid)


def workgate_session(base_url: str, lab: apps.JupyterApp) -> Target:
    """A user launches a web workspace on the lab through the API and opens it with an app
    ticket: the Target that sends the app cookie to the app's origin."""
    import httpx

    from accounts.models import User
    from accounts.tokens import issue_tokens
    from workspaces.models import Workspace

    user = User.objects.create_user(email="bench-apps@example.com", password=None)
    token = issue_tokens(user, mfa=False)["token"]
    workspace = Workspace.objects.create(
        name="JupyterLab",
        type="web",
        description="The benchmark's lab",
        url=lab.url,
        connection_type="web",
        requires_netbird=False,
        provisioner="web",
        app_credential_header="Authorization",
        app_credential=f"token {lab.token}",
    )
    port = int(base_url.rsplit(":", 1)[1])
    with httpx.Client(base_url=base_url, headers={"x-access-token": token}, timeout=30) as client:
        launched = client.post(f"/api/workspaces/{workspace.id}/launch")
        if launched.status_code != 201:
            raise RuntimeError(f"launch {launched.status_code}: {launched.text[:300]}")
        runtime = launched.json()["runtime_id"]
        ticket = client.post("/api/agents/workspace/app-ticket", json={"workspaceId": runtime})
        if ticket.status_code != 200:
            raise RuntimeError(f"app ticket {ticket.status_code}: {ticket.text[:300]}")
        app_url = httpx.URL(ticket.json()["appUrl"])
    host = f"{runtime}.apps.localhost:{port}"
    entered = httpx.get(
        f"{base_url}{app_url.raw_path.decode()}", headers={"Host": host}, follow_redirects=False
    )
    if entered.status_code != 303:
        raise RuntimeError(f"ticket exchange {entered.status_code}: {entered.text[:300]}")
    cookie = entered.headers["set-cookie"].split(";", 1)[0]
    if not cookie.startswith(ORIGIN_COOKIE + "="):
        raise RuntimeError(f"the exchange set {cookie.split('=', 1)[0]!r}")
    return Target("workgate", port, host, {"Cookie": cookie}, 0)


def measure(targets: list[Target], lab: apps.JupyterApp, file_path: str, args) -> dict:
    size = args.size_mb * MB
    rounds: dict[str, list[dict]] = {target.name: [] for target in targets}
    for _ in range(args.rounds):
        for target in targets:
            one = {
                "c1": wrk(target, lab.path("api"), connections=1, seconds=args.seconds),
                "c32": wrk(target, lab.path("api"), connections=32, seconds=args.seconds),
                "large": download(target, file_path, size),
            }
            rtt = asyncio.run(echo_times(target, lab, args.echoes))
            one["ws"] = {
                "p50_ms": round(percentile(rtt, 0.5) * 1000, 3),
                "p99_ms": round(percentile(rtt, 0.99) * 1000, 3),
            }
            rounds[target.name].append(one)
    return {name: {"rounds": per, "median": _median(per)} for name, per in rounds.items()}


def _median(rounds: list[dict]) -> dict:
    out: dict = {}
    for section in rounds[0]:
        out[section] = {
            key: statistics.median(r[section][key] for r in rounds) for key in rounds[0][section]
        }
    return out


def paired_ratio(results: dict, section: str, key: str) -> float:
    """Workgate's figure over nginx's, round by round (the two measured moments apart), and
    the median of those: steadier than the ratio of the medians when other work comes and goes."""
    pairs = zip(results["workgate"]["rounds"], results["nginx"]["rounds"], strict=True)
    return round(statistics.median(wg[section][key] / ng[section][key] for wg, ng in pairs), 2)


def summary(results: dict) -> list[dict]:
    wg, ng = results["workgate"]["median"], results["nginx"]["median"]
    rows = []
    large = paired_ratio(results, "large", "mb_per_s")
    rows.append(
        summary_row(
            f"app proxy {results['size_mb']} MB download",
            wg["large"]["mb_per_s"],
            "MB/s",
            anchor="nginx proxy_pass",
            anchor_value=ng["large"]["mb_per_s"],
            ratio=large,
            target=">= 0.5x",
            met=large >= 0.5,
        )
    )
    for level in ("c1", "c32"):
        ratio = paired_ratio(results, level, "p50_us")
        rows.append(
            summary_row(
                f"app proxy small answer p50 at {level.replace('c', 'c=')}",
                wg[level]["p50_us"],
                "µs",
                anchor="nginx proxy_pass",
                anchor_value=ng[level]["p50_us"],
                ratio=ratio,
                target="<= 2x",
                met=ratio <= 2.0,
            )
        )
        rows.append(
            summary_row(
                f"app proxy small answers/s at {level.replace('c', 'c=')}",
                wg[level]["rps"],
                "req/s",
                anchor="nginx proxy_pass",
                anchor_value=ng[level]["rps"],
                ratio=paired_ratio(results, level, "rps"),
            )
        )
    rows.append(
        summary_row(
            "app proxy WebSocket echo p50",
            wg["ws"]["p50_ms"],
            "ms",
            anchor="nginx proxy_pass",
            anchor_value=ng["ws"]["p50_ms"],
            ratio=paired_ratio(results, "ws", "p50_ms"),
        )
    )
    return rows


def main() -> None:
    args = parse_args()
    load_before = os.getloadavg()[0]
    port = free_port()
    env = server_env(
        database_url=args.database_url,
        redis_url=args.redis_url,
        WORKGATE_APPS_DOMAIN=f"apps.localhost:{port}",
        WORKGATE_APP_UPSTREAM_NETWORKS="127.0.0.0/8",
        WORKGATE_APP_SIGNING_KEY=apps.signing_key_pem(),
        WORKGATE_LAUNCH_RATE="1000/m",
        WORKGATE_TICKET_RATE="1000/m",
    )
    prepare_database(env)
    folder = Path(tempfile.mkdtemp(prefix="workgate-bench-apps-"))
    try:
        with contextlib.ExitStack() as stack:
            lab = stack.enter_context(apps.jupyter(folder / "lab"))
            file_path = apps.large_file(lab, size=args.size_mb * MB)
            direct = Target("direct", lab.port, f"127.0.0.1:{lab.port}", lab.authorization, lab.pid)
            (folder / "nginx").mkdir()
            behind_nginx = stack.enter_context(nginx_in_front(lab, folder / "nginx"))
            endpoint = f"tcp:port={port}:interface=127.0.0.1:backlog=2048"
            server = stack.enter_context(
                running(
                    [DAPHNE, "-e", endpoint, "config.asgi:application"],
                    port=port,
                    env=env,
                    cwd=ROOT,
                    stdout=subprocess.DEVNULL,
                )
            )
            through_workgate = workgate_session(f"http://127.0.0.1:{port}", lab)
            through_workgate.pid = server.pid
            measured = measure([direct, behind_nginx, through_workgate], lab, file_path, args)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if not args.keep_database:
            from django.db import connections

            connections.close_all()
            drop_database(args.database_url)
    results = {
        "benchmark": "app_proxy",
        "machine": machine(),
        "seconds": args.seconds,
        "rounds": args.rounds,
        "size_mb": args.size_mb,
        "echoes": args.echoes,
        "load_average": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
        **measured,
    }
    wg, ng = measured["workgate"]["median"], measured["nginx"]["median"]
    results["added_us_over_nginx"] = {
        level: wg[level]["p50_us"] - ng[level]["p50_us"] for level in ("c1", "c32")
    }
    results["summary"] = summary(results)
    emit(results, args.json)


if __name__ == "__main__":
    sys.exit(main())
