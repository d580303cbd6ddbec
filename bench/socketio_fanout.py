"""Socket.IO fan-out: events per second delivered to 100 sockets held by two server processes,
through Redis, for Workgate and for python-socketio's own ASGI server in the same run.

    .venv/bin/python bench/socketio_fanout.py [--sockets 100] [--events 200] [--rounds 3]
                                              [--rate 10] [--paced-events 50] [--json out.json]

1. recreates a scratch PostgreSQL database (`--database-url`, default workgate_bench_sio),
   migrates it, flushes two scratch Redis databases (`--redis-url`, default db 11, for Workgate;
   `--reference-redis-url`, default db 10, for python-socketio) and creates one user;
2. starts two Workgate Daphne processes (production settings: DEBUG off, channels-redis) and two
   Daphne processes serving python-socketio's AsyncServer with an AsyncRedisManager
   (bench/socketio_reference.py), the documented way to scale it out;
3. per round, scenario and system (the order alternates between rounds): a client process opens
   the sockets (the Engine.IO WebSocket transport, CONNECT with a token), half on each server
   process, and reports their socket ids. This process then streams to every socket at once, as
   that many concurrent assistant turns would, each event a STREAM payload (`prompt`
   cumulative, `delta` one word) carrying the time it was sent:
   - burst: every socket's `--events` as fast as the sender takes them. Workgate sends through
     SocketStream, the sink `POST /api/ai/personal/qanda` uses (opened, with its RELOAD, before
     the clock starts); python-socketio through `AsyncRedisManager(write_only=True).emit(...,
     to=sid)`, its way to reach a socket on any process;
   - per_event (Workgate only): the same events, each its own channel-layer group_send, which is
     what SocketStream does when events come slower than Redis round trips; it isolates the
     transport's cost per message, against python-socketio's one publish per emit;
   - paced: `--paced-events` per socket at `--rate` events/s per socket (a model's token rate),
     for latency under a steady load both keep up with;
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
from dataclasses import dataclass
from pathlib import Path

from common import (
    DAPHNE,
    ROOT,
    cpu_seconds,
    daphne,
    emit,
    flush_redis,
    latency_summary,
    machine,
    prepare_database,
    server_env,
    summary_row,
)

from tests.support.processes import free_port, running

WORD = "token "


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sockets", type=int, default=100)
    parser.add_argument("--events", type=int, default=200, help="events streamed to each socket")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--rate", type=float, default=10.0, help="events/s per socket in the paced scenario"
    )
    parser.add_argument("--paced-events", type=int, default=50)
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


async def _count(websocket, socket_id: str, events: int) -> dict:
    arrivals, latencies, misplaced, previous = [], [], 0, 0
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
        # The prompt grows by one word per event: anything else arrived out of order, and a
        # payload addressed to another socket arrived at the wrong one.
        misplaced += payload["to"] != socket_id or len(payload["prompt"]) <= previous
        previous = len(payload["prompt"])
        if len(arrivals) == events:
            break
    await websocket.close()
    return {
        "first": arrivals[0],
        "last": arrivals[-1],
        "latencies": latencies,
        "misplaced": misplaced,
    }


async def run_clients(urls: list[str], token: str, sockets: int, events: int) -> None:
    """Open the sockets, print their ids, count what arrives, print the arrivals."""
    opened = await asyncio.gather(*(_connect(urls[i % len(urls)], token) for i in range(sockets)))
    print(json.dumps({"ids": [socket_id for _, socket_id in opened]}), flush=True)
    counted = await asyncio.gather(
        *(_count(websocket, socket_id, events) for websocket, socket_id in opened)
    )
    latencies = [value for entry in counted for value in entry["latencies"]]
    print(
        json.dumps(
            {
                "first": min(entry["first"] for entry in counted),
                "last": max(entry["last"] for entry in counted),
                "received": len(latencies),
                "misplaced": sum(entry["misplaced"] for entry in counted),
                "latencies": latencies,
            }
        ),
        flush=True,
    )


# --- The emitting side ---------------------------------------------------------------------------


def _payload(index: int, socket_id: str) -> dict:
    return {
        "type": "STREAM",
        "prompt": WORD * (index + 1),
        "delta": WORD,
        "to": socket_id,
        "t": time.time(),
    }


class Workgate:
    name = "workgate"

    def __init__(self, user_id: int):
        self.user_id = user_id
        self.streams = []

    async def prepare(self, socket_ids: list[str]) -> None:
        from socketio_server.sink import SocketStream

        self.streams = [
            await SocketStream.open(socket_id=socket_id, user_id=self.user_id)
            for socket_id in socket_ids
        ]
        assert not any(stream.failed for stream in self.streams)

    async def stream(self, index: int, events: int, pace: float, batched: bool) -> None:
        from channels.layers import get_channel_layer

        from socketio_server.groups import packets, socket_group
        from socketio_server.protocol import event

        stream = self.streams[index]
        layer, group = get_channel_layer(), socket_group(stream.socket_id)
        for number in range(events):
            payload = _payload(number, stream.socket_id)
            if batched:
                await stream.emit(payload)
            else:
                # The transport alone: one channel-layer message per event, as every
                # python-socketio emit is one Redis publish.
                await layer.group_send(group, packets(event("RECEIVE_STREAM", payload)))
            if pace:
                await asyncio.sleep(pace)

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

    async def stream(self, index: int, events: int, pace: float, batched: bool) -> None:
        socket_id = self.socket_ids[index]
        for number in range(events):
            await self.manager.emit(
                "RECEIVE_STREAM", _payload(number, socket_id), to=socket_id, namespace="/"
            )
            if pace:
                await asyncio.sleep(pace)

    async def finish(self) -> None:
        pass


def _redis_cpu(url: str) -> float:
    import redis

    info = redis.Redis.from_url(url).info("cpu")
    return info["used_cpu_user"] + info["used_cpu_sys"]


@dataclass(frozen=True)
class Scenario:
    name: str
    events: int  # per socket
    pace: float  # seconds between two events to one socket; 0: as fast as the sender goes
    batched: bool  # Workgate: through SocketStream (the turn sink) or one message per event
    systems: tuple[str, ...]


async def measure(system, scenario, urls, pids, token, sockets, redis_url) -> dict:
    events = scenario.events
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
    cpu_before = cpu_seconds(*pids)
    redis_before = _redis_cpu(redis_url)
    started = time.time()
    await asyncio.gather(
        *(system.stream(index, events, scenario.pace, scenario.batched) for index in range(sockets))
    )
    sent = time.time()
    report = json.loads(await client.stdout.readline())
    await client.wait()
    cpu = cpu_seconds(*pids) - cpu_before
    redis_cpu = _redis_cpu(redis_url) - redis_before
    await system.finish()
    delivered = report["received"]
    elapsed = report["last"] - started
    return {
        "delivered": delivered,
        "expected": sockets * events,
        "misplaced": report["misplaced"],
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


def _medians(entries: list[dict]) -> dict:
    return {
        "events_per_s": _median(entries, "events_per_s"),
        "latency_p50_ms": _median([entry["latency_ms"] for entry in entries], "p50"),
        "latency_p99_ms": _median([entry["latency_ms"] for entry in entries], "p99"),
        "server_cpu_ms_per_1000": _median(entries, "server_cpu_ms_per_1000"),
        "redis_cpu_ms_per_1000": _median(entries, "redis_cpu_ms_per_1000"),
        "all_delivered": all(entry["delivered"] == entry["expected"] for entry in entries),
        "misplaced": sum(entry["misplaced"] for entry in entries),
    }


def summary_rows(median: dict, sockets: int, rate: float) -> list[dict]:
    anchor = "python-socketio + AsyncRedisManager"
    theirs = median["burst"]["python-socketio"]

    def row(metric, value, unit, anchor_value, **fields):
        return summary_row(metric, value, unit, anchor=anchor, anchor_value=anchor_value, **fields)

    burst = median["burst"]["workgate"]["events_per_s"]
    ratio = round(burst / theirs["events_per_s"], 2)
    per_event = median["per_event"]["workgate"]["events_per_s"]
    per_event_ratio = round(per_event / theirs["events_per_s"], 2)
    paced_ours, paced_theirs = median["paced"]["workgate"], median["paced"]["python-socketio"]
    return [
        row(
            f"Events/s to {sockets} sockets on 2 processes via Redis",
            burst,
            "events/s",
            theirs["events_per_s"],
            target=">= 0.5x",
            ratio=ratio,
            met=ratio >= 0.5,
        ),
        row(
            "The same, one channel-layer message per event",
            per_event,
            "events/s",
            theirs["events_per_s"],
            ratio=per_event_ratio,
        ),
        row(
            f"Event latency p99 at {rate:g} events/s per socket",
            paced_ours["latency_p99_ms"],
            "ms",
            paced_theirs["latency_p99_ms"],
        ),
    ]


def prepare(args: argparse.Namespace) -> tuple[dict[str, str], int, str]:
    """The scratch stores and a user; Django is set up in this process on the servers' settings,
    so it streams to Workgate's sockets exactly as a server process running a turn would."""
    env = server_env(
        database_url=args.database_url,
        redis_url=args.redis_url,
        # The one bench user stands for the many people whose sockets these would be.
        WORKGATE_SOCKETIO_MAX_SOCKETS_PER_USER=str(args.sockets),
    )
    prepare_database(env)
    flush_redis(args.reference_redis_url)
    from accounts.models import User
    from accounts.tokens import issue_tokens

    user = User.objects.create_user(email="bench@example.com", password=secrets.token_urlsafe())
    return env, user.pk, issue_tokens(user, mfa=False)["token"]


async def run(args: argparse.Namespace, env: dict[str, str], user_id: int, token: str) -> dict:
    workgate = Workgate(user_id)
    reference = Reference(args.reference_redis_url)
    scenarios = [
        Scenario("burst", args.events, 0.0, True, ("workgate", "python-socketio")),
        Scenario("per_event", args.events, 0.0, False, ("workgate",)),
        Scenario("paced", args.paced_events, 1 / args.rate, True, ("workgate", "python-socketio")),
    ]
    rounds = {scenario.name: {name: [] for name in scenario.systems} for scenario in scenarios}
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
        for number in range(args.rounds):
            for scenario in scenarios:
                names = scenario.systems if number % 2 == 0 else scenario.systems[::-1]
                for name in names:
                    system, urls, pids, redis_url = systems[name]
                    ws_urls = [url.replace("http://", "ws://") for url in urls]
                    result = await measure(
                        system, scenario, ws_urls, pids, token, args.sockets, redis_url
                    )
                    rounds[scenario.name][name].append(result)
                    line = json.dumps(result)
                    print(f"round {number + 1} {scenario.name} {name}: {line}", file=sys.stderr)
    median = {
        scenario: {name: _medians(entries) for name, entries in by_system.items()}
        for scenario, by_system in rounds.items()
    }
    return {
        "machine": machine(),
        "sockets": args.sockets,
        "events_per_socket": args.events,
        "paced_events_per_socket": args.paced_events,
        "paced_rate_per_socket": args.rate,
        "server_processes": 2,
        "rounds": rounds,
        "median": median,
        "summary": summary_rows(median, args.sockets, args.rate),
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
