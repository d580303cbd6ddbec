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
import os
import time
from pathlib import Path

import httpx
from common import daphne, emit, machine, percentile, prepare_database, rss_kib, server_env

QUESTION = "What is running?"
STREAM_PATH = "/api/ai/personal-stream/qanda-stream"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=10)
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


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Burst:
    def __init__(self):
        self.open = 0
        self.first_event: list[float] = []
        self.done: list[float] = []
        self.outcomes: dict[str, int] = {}

    def count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1


async def one_stream(client: httpx.AsyncClient, token: str, burst: Burst, start: asyncio.Event):
    await start.wait()
    began = time.perf_counter()
    outcome = "no-done"
    burst.open += 1
    try:
        async with client.stream(
            "POST", STREAM_PATH, json={"inputs": [QUESTION]}, headers={"x-access-token": token}
        ) as response:
            if response.status_code != 200:
                outcome = f"http-{response.status_code}"
                return
            last_type = None
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                kind = json.loads(line[6:])["type"]
                if last_type is None:
                    burst.first_event.append(time.perf_counter() - began)
                if kind == "done":
                    outcome = "complete" if last_type == "complete" else f"ended-{last_type}"
                    burst.done.append(time.perf_counter() - began)
                last_type = kind
    except httpx.HTTPError as exc:
        outcome = type(exc).__name__
    finally:
        burst.open -= 1
        burst.count(outcome)


async def sample(pid: int, burst: Burst, samples: list[tuple[int, int]], stop: asyncio.Event):
    while not stop.is_set():
        samples.append((rss_kib(pid), burst.open))
        await asyncio.sleep(0.01)


async def run(args: argparse.Namespace, base_url: str, pid: int, tokens: list[str]) -> dict:
    limits = httpx.Limits(max_connections=args.streams + 10, max_keepalive_connections=0)
    timeout = httpx.Timeout(args.timeout, connect=args.timeout)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=timeout) as client:
        warm = Burst()
        go = asyncio.Event()
        go.set()
        for token in tokens[: args.warmup]:
            await one_stream(client, token, warm, go)
        await asyncio.sleep(0.5)
        baseline = rss_kib(pid)
        alone = percentile(warm.done[args.warmup // 2 :], 0.5)  # after the first few

        burst, start, stop = Burst(), asyncio.Event(), asyncio.Event()
        samples: list[tuple[int, int]] = []
        streams = [
            asyncio.create_task(one_stream(client, token, burst, start))
            for token in tokens[args.warmup :]
        ]
        sampler = asyncio.create_task(sample(pid, burst, samples, stop))
        await asyncio.sleep(0.05)
        cpu_before = cpu_seconds(pid)
        client_cpu_before = time.process_time()
        began = time.perf_counter()
        start.set()
        await asyncio.wait_for(asyncio.gather(*streams), args.timeout)
        wall = time.perf_counter() - began
        server_cpu = cpu_seconds(pid) - cpu_before
        client_cpu = time.process_time() - client_cpu_before
        stop.set()
        await sampler
        after = rss_kib(pid)

    peak_rss, _ = max(samples)
    peak_open = max(open_count for _, open_count in samples)
    open_at_peak_rss = max(open_count for rss, open_count in samples if rss == peak_rss)
    ms = 1000.0
    return {
        "one_stream_alone_done_ms": round(alone * ms, 1),
        "streams": args.streams,
        "outcomes": burst.outcomes,
        "all_complete": burst.outcomes == {"complete": args.streams},
        "wall_s": round(wall, 3),
        "streams_per_s": round(args.streams / wall, 1),
        "server_cpu_ms_per_stream": round(server_cpu * 1000 / args.streams, 1),
        "client_cpu_ms_per_stream": round(client_cpu * 1000 / args.streams, 1),
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
        "rss_mib": {
            "before": round(baseline / 1024, 1),
            "peak": round(peak_rss / 1024, 1),
            "after": round(after / 1024, 1),
        },
        "open_streams": {"max": peak_open, "at_peak_rss": open_at_peak_rss},
        "kib_per_open_stream": round((peak_rss - baseline) / max(1, peak_open), 1),
    }


def main() -> None:
    args = parse_args()
    env, tokens = prepare(args)
    with daphne(env) as (base_url, pid):
        results = asyncio.run(run(args, base_url, pid, tokens))
    results["machine"] = machine()
    emit(results, args.json)


if __name__ == "__main__":
    main()
