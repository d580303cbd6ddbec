"""Many concurrent assistant streams on one Daphne process (run by hand; measures, never fails).

    .venv/bin/python bench/sse_load.py [--streams 500] [--json results.json]

What it does, all on loopback:
1. recreates a scratch PostgreSQL database (`--database-url`, default workgate_bench_sse), migrates
   it, flushes a scratch Redis database (`--redis-url`, default db 14), and creates one user per
   stream, so every stream is a different user under the real per-user rate limit;
2. starts one `daphne` process (production settings, builtin assistant) with a listen backlog
   large enough for every connection to arrive at once;
3. warms up with a few sequential streams, then opens all streams at the same moment, each asking
   "What is running?" (one thinking round, a list_sessions tool call, an answer in small deltas,
   a History row and an audit entry), and reads each to its `done` event;
4. samples the server's resident memory and the number of streams open at that instant every
   10 ms, and reports p50/p99 time to the first event and to done, and memory per open stream
   ((peak RSS - RSS before the burst) / the most streams open at once).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

from common import (
    cpu_seconds,
    daphne,
    emit,
    machine,
    percentile,
    prepare_database,
    rss_kib,
    server_env,
)

QUESTION = "What is running?"
STREAM_PATH = "/api/ai/personal-stream/qanda-stream"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3, help="bursts; the median is reported")
    parser.add_argument(
        "--database-url", default="postgres://postgres@127.0.0.1:5432/workgate_bench_sse"
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds for the burst")
    parser.add_argument("--json", type=Path, help="also write the results here")
    return parser.parse_args()


def prepare(args: argparse.Namespace) -> tuple[dict[str, str], list[str]]:
    """A fresh database with one user per stream; the server's environment and the tokens."""
    env = server_env(database_url=args.database_url, redis_url=args.redis_url)
    prepare_database(env)
    from accounts.models import User
    from accounts.tokens import issue_tokens

    users = User.objects.bulk_create(
        [User(email=f"bench{n}@example.com") for n in range(args.streams + args.warmup)]
    )
    return env, [issue_tokens(user, mfa=False)["token"] for user in users]


class Burst:
    def __init__(self):
        self.open = 0
        self.first_event: list[float] = []
        self.done: list[float] = []
        self.outcomes: dict[str, int] = {}

    def count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1


class HTTPStream:
    """A minimal HTTP/1.1 client for one streamed POST: the request goes out as one write and
    the chunked body is read as it comes. httpx costs ~4.6 ms of client CPU per stream, which
    would make the client, not the server, the bottleneck of a 500-stream burst on two cores."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port

    def request(self, token: str) -> bytes:
        body = json.dumps({"inputs": [QUESTION]}).encode()
        head = (
            f"POST {STREAM_PATH} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"x-access-token: {token}\r\nContent-Type: application/json\r\n"
            f"Accept: text/event-stream\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        )
        return head.encode() + body

    async def events(self, token: str) -> AsyncIterator[tuple[int, bytes]]:
        """(status, b"") first, then each `data:` payload as it arrives."""
        reader, writer = await asyncio.open_connection(self.host, self.port, limit=1 << 20)
        try:
            writer.write(self.request(token))
            head = await reader.readuntil(b"\r\n\r\n")
            yield int(head.split(b" ", 2)[1]), b""
            chunked = b"transfer-encoding: chunked" in head.lower()
            buffer = b""
            while True:
                if chunked:
                    size = int((await reader.readline()).split(b";")[0], 16)
                    if size == 0:
                        return
                    data = (await reader.readexactly(size + 2))[:-2]
                else:
                    data = await reader.read(65536)
                    if not data:
                        return
                buffer += data
                *complete, buffer = buffer.split(b"\n\n")
                for event in complete:
                    if event.startswith(b"data: "):
                        yield 200, event[6:]
        finally:
            writer.close()


async def read_stream(client: HTTPStream, token: str, seen) -> str:
    """Read one stream to its end, calling `seen(kind, first)` at each event as it arrives
    (`first`: it is the stream's first); the outcome, "complete" when it ended as it should."""
    last_type = None
    try:
        async for status, data in client.events(token):
            if status != 200:
                return f"http-{status}"
            if not data:
                continue
            kind = json.loads(data)["type"]
            seen(kind, last_type is None)
            if kind == "done":
                return "complete" if last_type == "complete" else f"ended-{last_type}"
            last_type = kind
    except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
        return type(exc).__name__
    return "no-done"


async def one_stream(client: HTTPStream, token: str, burst: Burst, start: asyncio.Event):
    await start.wait()
    began = time.perf_counter()

    def seen(kind: str, first: bool) -> None:
        if first:
            burst.first_event.append(time.perf_counter() - began)
        if kind == "done":
            burst.done.append(time.perf_counter() - began)

    burst.open += 1
    try:
        outcome = await read_stream(client, token, seen)
    finally:
        burst.open -= 1
    burst.count(outcome)


async def sample(pid: int, burst: Burst, samples: list[tuple[int, int]], stop: asyncio.Event):
    while not stop.is_set():
        samples.append((rss_kib(pid), burst.open))
        await asyncio.sleep(0.01)


async def burst_of(client: HTTPStream, tokens: list[str], timeout: float, pid: int) -> dict:
    """Open one stream per token at the same instant and read each to its end."""
    burst, start, stop = Burst(), asyncio.Event(), asyncio.Event()
    samples: list[tuple[int, int]] = []
    streams = [asyncio.create_task(one_stream(client, token, burst, start)) for token in tokens]
    sampler = asyncio.create_task(sample(pid, burst, samples, stop))
    await asyncio.sleep(0.05)
    cpu_before = cpu_seconds(pid)
    client_cpu_before = time.process_time()
    began = time.perf_counter()
    start.set()
    await asyncio.wait_for(asyncio.gather(*streams), timeout)
    wall = time.perf_counter() - began
    server_cpu = cpu_seconds(pid) - cpu_before
    client_cpu = time.process_time() - client_cpu_before
    stop.set()
    await sampler
    ms, streams_count = 1000.0, len(tokens)
    return {
        "outcomes": burst.outcomes,
        "all_complete": burst.outcomes == {"complete": streams_count},
        "wall_s": round(wall, 3),
        "streams_per_s": round(streams_count / wall, 1),
        "server_cpu_ms_per_stream": round(server_cpu * ms / streams_count, 2),
        "client_cpu_ms_per_stream": round(client_cpu * ms / streams_count, 2),
        "first_event_ms": {
            "p50": round(percentile(burst.first_event, 0.50) * ms, 1),
            "p99": round(percentile(burst.first_event, 0.99) * ms, 1),
            "max": round(max(burst.first_event) * ms, 1),
        },
        "done_ms": {
            "p50": round(percentile(burst.done, 0.50) * ms, 1),
            "p99": round(percentile(burst.done, 0.99) * ms, 1),
            "max": round(max(burst.done) * ms, 1),
        },
        "samples": samples,
    }


def median_round(rounds: list[dict]) -> dict:
    """The round whose first-event p99 is the median (the machine's noise is large)."""
    return sorted(rounds, key=lambda result: result["first_event_ms"]["p99"])[len(rounds) // 2]


async def run_floor(args: argparse.Namespace, base_url: str, pid: int) -> dict:
    url = urlsplit(base_url)
    client = HTTPStream(url.hostname, url.port)
    tokens = [f"floor-{n}" for n in range(args.streams)]
    rounds = []
    for _ in range(args.rounds):
        result = await burst_of(client, tokens, args.timeout, pid)
        result.pop("samples")
        rounds.append(result)
    return {"rounds": rounds, "median": median_round(rounds)}


async def run(args: argparse.Namespace, base_url: str, pid: int, tokens: list[str]) -> dict:
    url = urlsplit(base_url)
    client = HTTPStream(url.hostname, url.port)
    warm = Burst()
    go = asyncio.Event()
    go.set()
    for token in tokens[: args.warmup]:
        await one_stream(client, token, warm, go)
    await asyncio.sleep(0.5)
    baseline = rss_kib(pid)
    alone = percentile(warm.done[args.warmup // 2 :], 0.5)  # after the first few

    rounds = []
    for number in range(args.rounds):
        result = await burst_of(client, tokens[args.warmup :], args.timeout, pid)
        samples = result.pop("samples")
        if number == 0:  # memory: the first burst, from the warmed-up baseline
            peak_rss, _ = max(samples)
            peak_open = max(open_count for _, open_count in samples)
            memory = {
                "rss_mib": {"before": round(baseline / 1024, 1), "peak": round(peak_rss / 1024, 1)},
                "open_streams_max": peak_open,
                "kib_per_open_stream": round((peak_rss - baseline) / max(1, peak_open), 1),
            }
        rounds.append(result)
        await asyncio.sleep(1.0)  # let the last turns' database work settle
    median = median_round(rounds)
    return {
        "one_stream_alone_done_ms": round(alone * 1000.0, 1),
        "streams": args.streams,
        "rounds": rounds,
        **{key: median[key] for key in median},
        "all_complete": all(result["all_complete"] for result in rounds),
        **memory,
    }


def main() -> None:
    args = parse_args()
    env, tokens = prepare(args)
    with daphne(env, app="sse_floor_app:application", cwd=Path(__file__).parent) as (url, pid):
        floor = asyncio.run(run_floor(args, url, pid))
    with daphne(env) as (base_url, pid):
        results = asyncio.run(run(args, base_url, pid, tokens))
    results["floor"] = floor
    anchor = floor["median"]["first_event_ms"]["p99"]
    results["first_event_p99_vs_floor"] = round(results["first_event_ms"]["p99"] / anchor, 2)
    results["machine"] = machine()
    emit(results, args.json)


if __name__ == "__main__":
    main()
