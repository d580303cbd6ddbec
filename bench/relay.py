"""The VNC relay against websockify and a direct TCP connection, side by side in one run.

    .venv/bin/python bench/relay.py [--size-mb 256] [--rounds 3] [--rtt-count 2000]
                                    [--idle 200] [--short-mb 32] [--only bulk,openings,idle]
                                    [--json F]

Run by hand (or by `make bench`); it measures and never fails. All on loopback:
1. recreates a scratch PostgreSQL database (`--database-url`, default workgate_bench_relay),
   migrates it, flushes a scratch Redis database (`--redis-url`, default db 13);
2. starts one upstream "desktop" process: it greets like an RFB server ("RFB 003.008\\n"), then
   obeys one command byte: `B` + a 64-bit length streams that many bytes as fast as the socket
   takes them, `E` echoes everything after it;
3. through the real services creates a user, a `static` workspace whose vnc_target is that
   upstream, and a launched, ready session; each relay connection gets its own ticket;
4. starts one Daphne process (production settings, DEBUG off, Redis channel layer) and one
   websockify (PyPI, default options) in front of the same upstream;
5. with the same client (this process: the `websockets` client for both WebSocket paths,
   asyncio streams for direct TCP), measures per path, alternating the paths within each round:
   bulk download throughput with 1 and with 8 simultaneous connections of `--size-mb` each
   (upstream to viewer: the framebuffer direction), and the round trip of a 16-byte message
   through the echo (`--rtt-count` trips after 200 of warm-up). Throughput and p50/p99 are the
   medians over `--rounds`;
6. openings, per path and round (alternating as above): bursts of N = 1, 8 and 32 connections
   opened at the same moment (tickets minted before the burst, as a browser has its ticket
   before it opens the relay), each timed from the WebSocket request (the TCP connect) to the
   desktop's greeting, its first bytes: p50/p99 over the round's openings (20, 40 and 64 for
   N = 1, 8, 32); and short transfers: 8 connections of `--short-mb` each, every one opened
   inside the timed window;
7. opens `--idle` relay connections at once, leaves them idle, and reports the Daphne process's
   RSS growth per connection.

`--only` runs a subset of the cases (bulk: steps 5's throughput and round trip).

Targets (issue 4): relay throughput >= websockify's; relay p50 round trip <= 1.25x websockify's;
memory per idle relay connection < 100 KB. Issue 18: short-transfer throughput >= websockify's;
opening p50 <= 3x websockify's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import socket
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

from common import (
    ROOT,
    cpu_seconds,
    daphnes,
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

MB = 1024 * 1024
GREETING = b"RFB 003.008\n"
WEBSOCKIFY = ROOT / ".venv" / "bin" / "websockify"


# --- The upstream "desktop" (a process of its own) ------------------------------------------------


class _Desktop(asyncio.Protocol):
    CHUNK = memoryview(b"\x5a" * MB)

    def connection_made(self, transport):
        self.transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.write(GREETING)
        self.mode = b""
        self.pending = b""
        self.remaining = 0
        self.paused = False

    def data_received(self, data):
        if self.mode == b"E":
            self.transport.write(data)
            return
        if self.mode:
            return
        self.pending += data
        if self.pending[:1] == b"E":
            self.mode, rest = b"E", self.pending[1:]
            if rest:
                self.transport.write(rest)
        elif self.pending[:1] == b"B" and len(self.pending) >= 9:
            self.mode = b"B"
            (self.remaining,) = struct.unpack("!Q", self.pending[1:9])
            self._push()

    def _push(self):
        while self.remaining and not self.paused:
            count = min(self.remaining, MB)
            self.transport.write(self.CHUNK[:count])
            self.remaining -= count

    def pause_writing(self):
        self.paused = True

    def resume_writing(self):
        self.paused = False
        self._push()


def serve_upstream(port: int) -> None:
    async def main():
        server = await asyncio.get_running_loop().create_server(
            _Desktop, "127.0.0.1", port, backlog=1024
        )
        async with server:
            await server.serve_forever()

    asyncio.run(main())


# --- The client -------------------------------------------------------------------------------


class TcpPath:
    name = "direct TCP"
    server_pids: list[int] = []

    def __init__(self, port: int):
        self.port = port

    async def url_for(self) -> None:
        return None

    async def open(self, url: str | None = None):
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port, limit=4 * MB)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        assert await reader.readexactly(len(GREETING)) == GREETING
        return reader, writer

    async def send(self, connection, data: bytes) -> None:
        connection[1].write(data)

    async def recv(self, connection) -> bytes:
        data = await connection[0].read(4 * MB)
        if not data:
            raise EOFError
        return data

    async def close(self, connection) -> None:
        connection[1].close()
        with contextlib.suppress(OSError):
            await connection[1].wait_closed()


class WebSocketPath:
    def __init__(self, name: str, url_for, server_pids: list[int]):
        self.name = name
        self.url_for = url_for  # a coroutine function: the URL of one new connection
        self.server_pids = server_pids  # whose CPU time the path costs

    async def open(self, url: str | None = None):
        """A connection whose greeting has been read; to `url` if given (a ticket minted
        beforehand), else to a new URL from url_for."""
        from websockets.asyncio.client import connect

        ws = await connect(
            url or await self.url_for(),
            subprotocols=["binary"],
            max_size=None,
            compression=None,
            ping_interval=None,
            open_timeout=60,
        )
        greeting = b""
        while len(greeting) < len(GREETING):
            greeting += await ws.recv()
        assert greeting == GREETING, greeting
        return ws

    async def send(self, ws, data: bytes) -> None:
        await ws.send(data)

    async def recv(self, ws) -> bytes:
        return await ws.recv()

    async def close(self, ws) -> None:
        ws.transport.abort()  # bulk leftovers make a close handshake measure nothing useful


async def bulk(path, connections: int, size: int) -> float:
    """MB/s of `connections` simultaneous downloads of `size` bytes each."""
    opened = [await path.open() for _ in range(connections)]

    async def download(connection):
        await path.send(connection, b"B" + struct.pack("!Q", size))
        received = 0
        while received < size:
            received += len(await path.recv(connection))

    began = time.perf_counter()
    await asyncio.gather(*(download(c) for c in opened))
    elapsed = time.perf_counter() - began
    for connection in opened:
        await path.close(connection)
    return connections * size / MB / elapsed


async def openings(path, count: int) -> list[float]:
    """Seconds from each of `count` simultaneous WebSocket requests (TCP connects) to the
    desktop's greeting, its first bytes. Tickets are minted before the burst: a browser has its
    ticket before it opens the relay."""
    urls = [await path.url_for() for _ in range(count)]

    async def one(url):
        began = time.perf_counter()
        connection = await path.open(url)
        return connection, time.perf_counter() - began

    opened = await asyncio.gather(*(one(url) for url in urls))
    for connection, _ in opened:
        await path.close(connection)
    await asyncio.sleep(0.5)  # the relay's wind-downs are written, websockify's children exit
    return [seconds for _, seconds in opened]


async def short_transfers(path, connections: int, size: int) -> float:
    """MB/s of `connections` simultaneous downloads of `size` bytes each, every connection
    opened inside the timed window (its ticket minted before it)."""
    urls = [await path.url_for() for _ in range(connections)]

    async def one(url):
        connection = await path.open(url)
        await path.send(connection, b"B" + struct.pack("!Q", size))
        received = 0
        while received < size:
            received += len(await path.recv(connection))
        await path.close(connection)

    began = time.perf_counter()
    await asyncio.gather(*(one(url) for url in urls))
    elapsed = time.perf_counter() - began
    await asyncio.sleep(0.5)
    return connections * size / MB / elapsed


CASES = ("bulk", "openings", "idle")
OPENING_BURSTS = {1: 20, 8: 5, 32: 2}  # bursts per round: 20, 40 and 64 openings


async def measure_openings(paths, args) -> dict:
    """Per path and round (the paths alternating): opening p50/p99 for each burst size, and the
    short-transfer throughput; medians over the rounds."""
    keys = [f"open_{n}_{q}" for n in OPENING_BURSTS for q in ("p50", "p99")]
    keys += ["short_8", "cpu_per_opening_ms"]
    results = {path.name: {key: [] for key in keys} for path in paths}
    for path in paths:  # warm-up
        await openings(path, 8)
        await short_transfers(path, 2, 4 * MB)
    for round_index in range(args.rounds):
        order = paths[round_index % len(paths) :] + paths[: round_index % len(paths)]
        for path in order:
            entry = results[path.name]
            cpu, opened = cpu_seconds(*path.server_pids), 0
            for count, bursts in OPENING_BURSTS.items():
                times = []
                for _ in range(bursts):
                    times += await openings(path, count)
                entry[f"open_{count}_p50"].append(percentile(times, 0.50) * 1e3)
                entry[f"open_{count}_p99"].append(percentile(times, 0.99) * 1e3)
                opened += len(times)
            if path.server_pids:  # each opening and its close, the server's processes (and forks)
                entry["cpu_per_opening_ms"].append(
                    (cpu_seconds(*path.server_pids) - cpu) / opened * 1e3
                )
            entry["short_8"].append(await short_transfers(path, 8, args.short_mb * MB))
            print(
                f"round {round_index + 1} {path.name:>10}: opening p50/p99 "
                + ", ".join(
                    f"N={n} {entry[f'open_{n}_p50'][-1]:.1f}/{entry[f'open_{n}_p99'][-1]:.1f} ms"
                    for n in OPENING_BURSTS
                )
                + f"; 8 x {args.short_mb} MB opened in the window {entry['short_8'][-1]:.1f} MB/s"
                + (
                    f"; server CPU per opening {entry['cpu_per_opening_ms'][-1]:.2f} ms"
                    if entry["cpu_per_opening_ms"]
                    else ""
                ),
                file=sys.stderr,
                flush=True,
            )
    return results


async def round_trips(path, count: int, warmup: int = 200) -> list[float]:
    connection = await path.open()
    await path.send(connection, b"E")
    message = b"0123456789abcdef"
    times = []
    for index in range(warmup + count):
        began = time.perf_counter()
        await path.send(connection, message)
        echoed = b""
        while len(echoed) < len(message):
            echoed += await path.recv(connection)
        if index >= warmup:
            times.append(time.perf_counter() - began)
    await path.close(connection)
    return times


async def idle_memory(path, pid: int, count: int) -> float:
    """KiB of Daphne RSS per idle relay connection."""
    for connection in [await path.open() for _ in range(20)]:  # warm every code path first
        await path.close(connection)
    await asyncio.sleep(2)
    before = rss_kib(pid)
    opened = []
    for start in range(0, count, 50):
        batch = await asyncio.gather(*(path.open() for _ in range(min(50, count - start))))
        opened.extend(batch)
    for ws in opened:
        await ws.send(b"E")  # the upstream waits in echo mode; nothing else moves
    await asyncio.sleep(3)
    after = rss_kib(pid)
    for ws in opened:
        await path.close(ws)
    return (after - before) / count


# --- Setup -------------------------------------------------------------------------------------


def make_session(upstream_port: int):
    """A user and their ready session of a static desktop at the upstream, via the services."""
    from accounts.models import User
    from core.network import SYSTEM
    from sessions_app.services import session_launch
    from workspaces.models import Workspace

    user = User.objects.create_user(email="bench@example.com", password=secrets.token_urlsafe())
    workspace = Workspace.objects.create(
        id="ws-relaybench",
        name="Relay bench desktop",
        type="linux",
        description="bench/relay.py",
        connection_type="vnc",
        provisioner="static",
        vnc_target=f"tcp://127.0.0.1:{upstream_port}",
        requires_netbird=False,
    )
    session, _ = session_launch(
        user=user, workspace_id=workspace.id, origin=SYSTEM, mfa_verified=False
    )
    assert session.status == "ready", session.status
    return user, session


def ticket_url_factory(user, session, port: int):
    from asgiref.sync import sync_to_async

    from core.network import SYSTEM
    from vnc_proxy.services import ticket_issue

    @sync_to_async
    def mint() -> str:
        issued = ticket_issue(
            user=user, workspace_id=session.runtime_id, origin=SYSTEM, mfa_verified=False
        )
        return (
            f"ws://127.0.0.1:{port}/api/agents/workspace/vnc/{session.runtime_id}"
            f"?ticket={issued.ticket}"
        )

    return mint


def _row(metric, value, unit, *, anchor_value=None, **fields) -> dict:
    """A summary row whose ratio is value / anchor_value (to three places)."""
    ratio = round(value / anchor_value, 3) if anchor_value else None
    return summary_row(metric, value, unit, anchor_value=anchor_value, ratio=ratio, **fields)


async def measure(paths, args, daphne_pids: list[int]) -> dict:
    size = args.size_mb * MB
    keys = ("bulk_1", "bulk_8", "cpu_per_gb_1", "cpu_per_gb_8", "rtt_p50", "rtt_p99")
    results = {path.name: {key: [] for key in keys} for path in paths}
    for path in paths:  # warm-up: code paths, connection pools, TCP autotuning
        await bulk(path, 1, 16 * MB)
        await round_trips(path, 200)
    for round_index in range(args.rounds if "bulk" in args.only else 0):
        order = paths[round_index % len(paths) :] + paths[: round_index % len(paths)]
        for path in order:
            entry = results[path.name]
            for connections in (1, 8):
                cpu = cpu_seconds(*path.server_pids)
                entry[f"bulk_{connections}"].append(await bulk(path, connections, size))
                if path.server_pids:
                    await asyncio.sleep(1)  # websockify's per-connection children exit
                    used = cpu_seconds(*path.server_pids) - cpu
                    entry[f"cpu_per_gb_{connections}"].append(used / (connections * size / 1024**3))
            times = await round_trips(path, args.rtt_count)
            entry["rtt_p50"].append(percentile(times, 0.50) * 1e6)
            entry["rtt_p99"].append(percentile(times, 0.99) * 1e6)
            cpu = (
                f", CPU {entry['cpu_per_gb_1'][-1]:.2f}/{entry['cpu_per_gb_8'][-1]:.2f} s/GB"
                if entry["cpu_per_gb_1"]
                else ""
            )
            print(
                f"round {round_index + 1} {path.name:>10}: "
                f"1 conn {entry['bulk_1'][-1]:7.1f} MB/s, 8 conns {entry['bulk_8'][-1]:7.1f} MB/s"
                f", rtt p50 {entry['rtt_p50'][-1]:6.0f} us p99 {entry['rtt_p99'][-1]:6.0f} us{cpu}",
                file=sys.stderr,
                flush=True,
            )
    if "openings" in args.only:
        for name, entry in (await measure_openings(paths, args)).items():
            results[name].update(entry)
    summary = {
        name: {key: round(statistics.median(values), 2) for key, values in entry.items() if values}
        for name, entry in results.items()
    }
    if "idle" in args.only and len(daphne_pids) == 1:  # one process's growth per connection
        relay_path = next(path for path in paths if path.name == "relay")
        summary["relay"]["idle_kib_per_connection"] = round(
            await idle_memory(relay_path, daphne_pids[0], args.idle), 1
        )
    return {"rounds": results, "median": summary}


def summary_rows(median: dict) -> list[dict]:
    relay, websockify, direct = median["relay"], median["websockify"], median["direct TCP"]
    rows = []
    if "bulk_1" in relay:
        rows += _bulk_rows(relay, websockify, direct)
    if "open_1_p50" in relay:
        rows += _opening_rows(relay, websockify, direct)
    if "idle_kib_per_connection" in relay:
        rows.append(
            _row(
                "Memory per idle relay connection",
                relay["idle_kib_per_connection"],
                "KiB",
                target="< 100 KB",
                met=relay["idle_kib_per_connection"] * 1024 < 100_000,
            )
        )
    return rows


def _opening_rows(relay: dict, websockify: dict, direct: dict) -> list[dict]:
    rows = []
    for count in OPENING_BURSTS:
        p50, p99 = f"open_{count}_p50", f"open_{count}_p99"
        rows.append(
            _row(
                f"Relay opening p50, {count} at once (request to the desktop's first byte)",
                relay[p50],
                "ms",
                anchor="websockify",
                anchor_value=websockify[p50],
                target="<= 3x websockify",
                met=relay[p50] <= 3 * websockify[p50],
            )
        )
        rows.append(
            _row(
                f"Relay opening p99, {count} at once",
                relay[p99],
                "ms",
                anchor="websockify",
                anchor_value=websockify[p99],
            )
        )
    rows.append(_row("Direct TCP opening p50, 32 at once", direct["open_32_p50"], "ms"))
    rows.append(
        _row(
            "Relay server CPU per opening (its close included)",
            relay["cpu_per_opening_ms"],
            "ms",
            anchor="websockify",
            anchor_value=websockify["cpu_per_opening_ms"],
        )
    )
    rows.append(
        _row(
            "Relay throughput, 8 connections each opened in the window (short transfers)",
            relay["short_8"],
            "MB/s",
            anchor="websockify",
            anchor_value=websockify["short_8"],
            target=">= 1x websockify",
            met=relay["short_8"] >= websockify["short_8"],
        )
    )
    return rows


def _bulk_rows(relay: dict, websockify: dict, direct: dict) -> list[dict]:
    rows = []
    for key, label in (("bulk_1", "1 connection"), ("bulk_8", "8 connections")):
        rows.append(
            _row(
                f"Relay throughput, {label}",
                relay[key],
                "MB/s",
                anchor="websockify",
                anchor_value=websockify[key],
                target=">= 1x websockify",
                met=relay[key] >= websockify[key],
            )
        )
        rows.append(_row(f"Direct TCP throughput, {label}", direct[key], "MB/s"))
        cpu = f"cpu_per_gb_{key[-1]}"
        rows.append(
            _row(
                f"Relay server CPU per GB, {label}",
                relay[cpu],
                "s",
                anchor="websockify",
                anchor_value=websockify[cpu],
            )
        )
    rows.append(
        _row(
            "Relay round trip p50",
            relay["rtt_p50"],
            "us",
            anchor="websockify",
            anchor_value=websockify["rtt_p50"],
            target="<= 1.25x websockify",
            met=relay["rtt_p50"] <= 1.25 * websockify["rtt_p50"],
        )
    )
    rows.append(
        _row(
            "Relay round trip p99",
            relay["rtt_p99"],
            "us",
            anchor="websockify",
            anchor_value=websockify["rtt_p99"],
        )
    )
    rows.append(_row("Direct TCP round trip p50", direct["rtt_p50"], "us"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rtt-count", type=int, default=2000)
    parser.add_argument("--idle", type=int, default=200)
    parser.add_argument("--short-mb", type=int, default=32)
    parser.add_argument(
        "--only",
        type=lambda text: set(text.split(",")),
        default=set(CASES),
        help=f"a comma-separated subset of {','.join(CASES)}",
    )
    parser.add_argument(
        "--database-url", default="postgres://postgres@127.0.0.1:5432/workgate_bench_relay"
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="Daphne processes serving the relay on one listening socket (deployment.md runs "
        "one per core); memory per idle connection is measured with 1 only",
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument("--serve-upstream", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_upstream:
        serve_upstream(args.serve_upstream)
        return

    env = server_env(
        database_url=args.database_url,
        redis_url=args.redis_url,
        # Every connection of the run is a viewer of the same desktop.
        WORKGATE_VNC_MAX_VIEWERS=str(args.idle + 100),
    )
    prepare_database(env)
    upstream_port, websockify_port = free_port(), free_port()
    with contextlib.ExitStack() as stack:
        stack.enter_context(
            running(
                [sys.executable, __file__, "--serve-upstream", upstream_port],
                port=upstream_port,
            )
        )
        websockify = stack.enter_context(
            running(
                [WEBSOCKIFY, f"127.0.0.1:{websockify_port}", f"127.0.0.1:{upstream_port}"],
                port=websockify_port,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        base_url, daphne_pids = stack.enter_context(daphnes(env, processes=args.processes))
        user, session = make_session(upstream_port)
        daphne_port = int(base_url.rsplit(":", 1)[1])

        async def websockify_url() -> str:
            return f"ws://127.0.0.1:{websockify_port}/"

        paths = [
            WebSocketPath("relay", ticket_url_factory(user, session, daphne_port), daphne_pids),
            WebSocketPath("websockify", websockify_url, [websockify.pid]),
            TcpPath(upstream_port),
        ]
        measured = asyncio.run(measure(paths, args, daphne_pids))

    results = {
        "benchmark": "relay",
        "machine": machine(),
        "parameters": {
            "size_mb": args.size_mb,
            "rounds": args.rounds,
            "rtt_count": args.rtt_count,
            "idle_connections": args.idle,
            "short_mb": args.short_mb,
            "opening_bursts": OPENING_BURSTS,
            "cases": sorted(args.only),
            "relay_processes": args.processes,
        },
        **measured,
    }
    results["summary"] = summary_rows(measured["median"])
    if args.processes > 1:
        for row in results["summary"]:
            if row["metric"].startswith("Relay"):
                row["metric"] += f" ({args.processes} Daphne processes)"
    emit(results, args.json)


if __name__ == "__main__":
    main()
