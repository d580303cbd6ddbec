"""Socket.IO fan-out: events per second delivered to 100 sockets held by two server processes,
through Redis, for Workgate and for python-socketio's own ASGI server in the same run.

    .venv/bin/python bench/socketio_fanout.py [--sockets 100] [--events 200] [--rounds 3]
                                              [--json results.json]

1. recreates a scratch PostgreSQL database (`--database-url`, default workgate_bench_sio),
   migrates it, flushes two scratch Redis databases (`--redis-url`, default db 11, for Workgate;
   `--reference-redis-url`, default db 10, for python-socketio) and creates one user;
2. starts two Workgate Daphne processes (production settings: DEBUG off, channels-redis) and two
   Daphne processes serving python-socketio's AsyncServer with an AsyncRedisManager
   (bench/socketio_reference.py), the documented way to scale it out;
3. per round and per system (the order alternates between rounds): a client process opens the
   sockets (the Engine.IO WebSocket transport, CONNECT with a token), half on each server
   process, and reports their socket ids. This process then streams to every socket at once, as
   that many concurrent assistant turns would: for Workgate a SocketStream per socket (the sink
   `POST /api/ai/personal/qanda` uses: the store lookup and RELOAD happen before the clock
   starts) sending each event as a channel-layer group_send; for python-socketio
   `AsyncRedisManager(write_only=True).emit("RECEIVE_STREAM", ..., to=sid)`, its way to reach a
   socket on any process. Each event is a STREAM payload (`prompt` cumulative, `delta` one word)
   that carries the time it was sent;
4. events/s = sockets x events / (the last arrival - the first send); latency = arrival - the send
   time in the payload (one clock: one machine). Server and Redis CPU are read from /proc and
   INFO over the same window.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import (
    DAPHNE,
    ROOT,
    daphne,
    emit,
    flush_redis,
    latency_summary,
    machine,
    prepare_database,
    server_env,
)

from tests.support.processes import free_port, running

WORD = "token "


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sockets", type=int, default=100)
    parser.add_argument("--events", type=int, default=200, help="events streamed to each socket")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--database-url", default="postgres://postgres@127.0.0.1:5432/workgate_bench_sio"
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/11")
    parser.add_argument("--reference-redis-url", default="redis://127.0.0.1:6379/10")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--client", nargs=4, metavar=("URLS", "TOKEN", "SOCKETS", "EVENTS"), help=argparse.SUPPRESS
    )  # the client process's own entry point
    return parser.parse_args()


# --- The client process --------------------------------------------------------------------------


async def _connect(url: str, token: str):
    from websockets.asyncio.client import connect

    websocket = await connect(
        f"{url}/socket.io/?EIO=4&transport=websocket", compression=None, max_size=None
    )
    await websocket.recv()  # the open packet
    await websocket.send("40" + json.dumps({"token": token}))
    while True:
        message = await websocket.recv()
        if message.startswith("40"):
            return websocket, json.loads(message[2:])["sid"]
        if message == "2":
            await websocket.send("3")


async def _count(websocket, events: int) -> dict:
    arrivals, latencies = [], []
    async for message in websocket:
        if message == "2":
            await websocket.send("3")
            continue
        if not message.startswith("42"):
            continue
        now = time.time()
        _name, payload = json.loads(message[2:])
        if payload.get("type") != "STREAM":
            continue
        arrivals.append(now)
        latencies.append(now - payload["t"])
        if len(arrivals) == events:
            break
    await websocket.close()
    return {"first": arrivals[0], "last": arrivals[-1], "latencies": latencies}


async def run_clients(urls: list[str], token: str, sockets: int, events: int) -> None:
    """Open the sockets, print their ids, count what arrives, print the arrivals."""
    opened = await asyncio.gather(*(_connect(urls[i % len(urls)], token) for i in range(sockets)))
    print(json.dumps({"ids": [socket_id for _, socket_id in opened]}), flush=True)
    counted = await asyncio.gather(*(_count(websocket, events) for websocket, _ in opened))
    latencies = [value for entry in counted for value in entry["latencies"]]
    print(
        json.dumps(
            {
                "first": min(entry["first"] for entry in counted),
                "last": max(entry["last"] for entry in counted),
                "received": len(latencies),
                "latencies": latencies,
            }
        ),
        flush=True,
    )


# --- The emitting side ---------------------------------------------------------------------------


def _payload(index: int) -> dict:
    return {"type": "STREAM", "prompt": WORD * (index + 1), "delta": WORD, "t": time.time()}


class Workgate:
    name = "workgate"

    def __init__(self, user_id: int):
        self.user_id = user_id
        self.streams = []

    async def prepare(self, socket_ids: list[str]) -> None:
        from streaming.socketio.sink import SocketStream

        self.streams = [
            await SocketStream.open(socket_id=socket_id, user_id=self.user_id)
            for socket_id in socket_ids
        ]
        assert not any(stream.failed for stream in self.streams)

    async def stream(self, index: int, events: int) -> None:
        stream = self.streams[index]
        for number in range(events):
            await stream.emit(_payload(number))

    async def finish(self) -> None:
        for stream in self.streams:
            await stream.close()


class Reference:
    name = "python-socketio"

    def __init__(self, redis_url: str):
        import socketio

        self.manager = socketio.AsyncRedisManager(redis_url, write_only=True)
        self.socket_ids: list[str] = []

    async def prepare(self, socket_ids: list[str]) -> None:
        self.socket_ids = socket_ids

    async def stream(self, index: int, events: int) -> None:
        for number in range(events):
            await self.manager.emit(
                "RECEIVE_STREAM", _payload(number), to=self.socket_ids[index], namespace="/"
            )

    async def finish(self) -> None:
        pass


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(value) for value in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def _redis_cpu(url: str) -> float:
    import redis

    info = redis.Redis.from_url(url).info("cpu")
    return info["used_cpu_user"] + info["used_cpu_sys"]


async def measure(system, urls, pids, token, sockets, events, redis_url) -> dict:
    client = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--client",
        json.dumps(urls),
        token,
        str(sockets),
        str(events),
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
        limit=1 << 24,  # the report is one line with every latency
    )
    socket_ids = json.loads(await client.stdout.readline())["ids"]
    await system.prepare(socket_ids)
    await asyncio.sleep(0.5)  # let the RELOADs and connection traffic settle before the clock
    cpu_before = sum(_cpu_seconds(pid) for pid in pids)
    redis_before = _redis_cpu(redis_url)
    started = time.time()
    await asyncio.gather(*(system.stream(index, events) for index in range(sockets)))
    sent = time.time()
    report = json.loads(await client.stdout.readline())
    await client.wait()
    cpu = sum(_cpu_seconds(pid) for pid in pids) - cpu_before
    redis_cpu = _redis_cpu(redis_url) - redis_before
    await system.finish()
    delivered = report["received"]
    elapsed = report["last"] - started
    return {
        "delivered": delivered,
        "expected": sockets * events,
        "seconds": round(elapsed, 3),
        "send_seconds": round(sent - started, 3),
        "events_per_s": round(delivered / elapsed, 1),
        "latency_ms": latency_summary(report["latencies"]),
        "server_cpu_ms_per_1000": round(cpu * 1000 / delivered * 1000, 1),
        "redis_cpu_ms_per_1000": round(redis_cpu * 1000 / delivered * 1000, 1),
    }


# --- Servers -------------------------------------------------------------------------------------


def reference_server(redis_url: str):
    port = free_port()
    env = {
        **{key: value for key, value in os.environ.items() if not key.startswith("DJANGO_")},
        "SIO_REDIS_URL": redis_url,
        "PYTHONPATH": str(ROOT / "bench"),
    }
    endpoint = f"tcp:port={port}:interface=127.0.0.1:backlog=2048"
    return port, running(
        [DAPHNE, "-e", endpoint, "socketio_reference:application"],
        port=port,
        env=env,
        cwd=ROOT / "bench",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _median(rounds: list[dict], key: str) -> float:
    return round(statistics.median(entry[key] for entry in rounds), 1)


def summary_rows(median: dict, sockets: int) -> list[dict]:
    ours, theirs = median["workgate"], median["python-socketio"]
    ratio = round(ours["events_per_s"] / theirs["events_per_s"], 2)
    anchor = "python-socketio + AsyncRedisManager"
    return [
        {
            "metric": f"Events/s to {sockets} sockets on 2 processes via Redis",
            "value": ours["events_per_s"],
            "unit": "events/s",
            "anchor": anchor,
            "anchor_value": theirs["events_per_s"],
            "ratio": ratio,
            "target": ">= 0.5x",
            "met": ratio >= 0.5,
        },
        {
            "metric": "Socket.IO event latency p99 under that load",
            "value": ours["latency_p99_ms"],
            "unit": "ms",
            "anchor": anchor,
            "anchor_value": theirs["latency_p99_ms"],
            "ratio": None,
            "target": "",
            "met": None,
        },
    ]


def prepare(args: argparse.Namespace) -> tuple[dict[str, str], int, str]:
    """The scratch stores and a user; Django is set up in this process on the servers' settings,
    so it streams to Workgate's sockets exactly as a server process running a turn would."""
    env = server_env(database_url=args.database_url, redis_url=args.redis_url)
    prepare_database(env)
    flush_redis(args.reference_redis_url)
    from accounts.models import User
    from accounts.tokens import issue_tokens

    user = User.objects.create_user(email="bench@example.com", password=secrets.token_urlsafe())
    return env, user.pk, issue_tokens(user, mfa=False)["token"]


async def run(args: argparse.Namespace, env: dict[str, str], user_id: int, token: str) -> dict:
    workgate = Workgate(user_id)
    reference = Reference(args.reference_redis_url)
    rounds: dict[str, list[dict]] = {"workgate": [], "python-socketio": []}
    ref_a, ref_a_running = reference_server(args.reference_redis_url)
    ref_b, ref_b_running = reference_server(args.reference_redis_url)
    with (
        daphne(env) as (url_a, pid_a),
        daphne(env) as (url_b, pid_b),
        ref_a_running as proc_a,
        ref_b_running as proc_b,
    ):
        systems = {
            "workgate": (workgate, [url_a, url_b], [pid_a, pid_b], args.redis_url),
            "python-socketio": (
                reference,
                [f"http://127.0.0.1:{ref_a}", f"http://127.0.0.1:{ref_b}"],
                [proc_a.pid, proc_b.pid],
                args.reference_redis_url,
            ),
        }
        order = list(systems)
        for number in range(args.rounds):
            for name in order if number % 2 == 0 else reversed(order):
                system, urls, pids, redis_url = systems[name]
                http_urls = [url.replace("http://", "ws://") for url in urls]
                result = await measure(
                    system, http_urls, pids, token, args.sockets, args.events, redis_url
                )
                rounds[name].append(result)
                print(f"round {number + 1} {name}: {json.dumps(result)}", file=sys.stderr)
    median = {
        name: {
            "events_per_s": _median(entries, "events_per_s"),
            "latency_p50_ms": _median([e["latency_ms"] for e in entries], "p50"),
            "latency_p99_ms": _median([e["latency_ms"] for e in entries], "p99"),
            "server_cpu_ms_per_1000": _median(entries, "server_cpu_ms_per_1000"),
            "redis_cpu_ms_per_1000": _median(entries, "redis_cpu_ms_per_1000"),
            "all_delivered": all(e["delivered"] == e["expected"] for e in entries),
        }
        for name, entries in rounds.items()
    }
    return {
        "machine": machine(),
        "sockets": args.sockets,
        "events_per_socket": args.events,
        "server_processes": 2,
        "rounds": rounds,
        "median": median,
        "summary": summary_rows(median, args.sockets),
    }


def main() -> None:
    args = parse_args()
    if args.client:
        urls, token, sockets, events = args.client
        asyncio.run(run_clients(json.loads(urls), token, int(sockets), int(events)))
        return
    env, user_id, token = prepare(args)
    emit(asyncio.run(run(args, env, user_id, token)), args.json)


if __name__ == "__main__":
    main()
