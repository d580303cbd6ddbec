"""Answers that last, arriving over time: how many concurrent assistant streams one Daphne
process carries (run by hand, or by `make bench`; measures, never fails).

    .venv/bin/python bench/sse_sustained.py [--levels 50,100,200,300,500] [--json out.json]

bench/sse_load.py opens 500 streams in the same instant, each answered at once by the builtin
assistant. A real model streams an answer for seconds, and users do not all ask in the same
millisecond; this measures that. A loopback OpenAI-compatible server (bench/openai_stream_app.py,
a process of its own) answers every turn with `--tokens` words, one every `--token-ms` (by
default 150 words at 25 a second: six seconds). For each level N, N streams (N users, the real
per-user rate limit) are opened at a steady pace over `--ramp` seconds, shorter than an answer,
so all N are open together at the end; each is read to its `done`. Per level: completed streams,
time from request to the first event (`connected`, sent once the request is admitted, before
the model is asked: the issue's measure) and to the first word of the answer (the first
`stream` event), p50/p99; each stream's longest wait between two answer events, p99 over the
streams (the model's own pace is --token-ms); the server's CPU per stream. The capacity is the
largest level at which it, and every level below it, had every stream complete and its
first-event p99 under 250 ms. A p99 over one level pools streams that arrived at every load
from 0 to N, so levels are read together, not one at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from common import (
    ROOT,
    cpu_seconds,
    daphne,
    emit,
    free_port,
    machine,
    percentile,
    running,
    summary_row,
)
from sse_load import HTTPStream, prepare, read_stream

TARGET_MS = 250.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="50,100,200,300,500")
    parser.add_argument("--ramp", type=float, default=4.0, help="seconds over which a level opens")
    parser.add_argument("--tokens", type=int, default=150)
    parser.add_argument("--token-ms", type=int, default=40)
    parser.add_argument(
        "--database-url", default="postgres://postgres@127.0.0.1:5432/workgate_bench_sse"
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds for one level")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    args.level_list = [int(level) for level in args.levels.split(",")]
    args.streams = max(args.level_list)
    args.warmup = 2
    return args


class Level:
    def __init__(self):
        self.first_event: list[float] = []
        self.first_word: list[float] = []
        self.longest_gap: list[float] = []
        self.outcomes: dict[str, int] = {}

    def count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1


async def one_stream(client: HTTPStream, token: str, level: Level) -> None:
    began = time.perf_counter()
    answer = {"last": None, "longest": 0.0}

    def seen(kind: str, first: bool) -> None:
        now = time.perf_counter()
        if first:
            level.first_event.append(now - began)
        if kind == "stream":
            if answer["last"] is None:
                level.first_word.append(now - began)
            else:
                answer["longest"] = max(answer["longest"], now - answer["last"])
            answer["last"] = now

    try:
        outcome = await read_stream(client, token, seen)
    except asyncio.CancelledError:
        outcome = "timeout"  # still open when the level's time was up
    level.count(outcome)
    if outcome == "complete":
        level.longest_gap.append(answer["longest"])


async def run_level(client: HTTPStream, tokens: list[str], ramp: float, pid: int, timeout: float):
    level, tasks = Level(), []
    cpu_before, began = cpu_seconds(pid), time.perf_counter()
    for n, token in enumerate(tokens):
        delay = began + ramp * n / len(tokens) - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one_stream(client, token, level)))
    _done, late = await asyncio.wait(tasks, timeout=timeout)
    for task in late:
        task.cancel()
    await asyncio.gather(*late)
    ms = 1000.0
    return {
        "streams": len(tokens),
        "outcomes": level.outcomes,
        "all_complete": level.outcomes == {"complete": len(tokens)},
        "first_event_ms": {
            "p50": round(percentile(level.first_event, 0.5) * ms, 1),
            "p99": round(percentile(level.first_event, 0.99) * ms, 1),
        },
        "first_word_ms": {
            "p50": round(percentile(level.first_word, 0.5) * ms, 1),
            "p99": round(percentile(level.first_word, 0.99) * ms, 1),
        },
        "longest_gap_ms_p99": round(percentile(level.longest_gap, 0.99) * ms, 1)
        if level.longest_gap
        else None,
        "server_cpu_ms_per_stream": round((cpu_seconds(pid) - cpu_before) * ms / len(tokens), 2),
        "wall_s": round(time.perf_counter() - began, 1),
    }


async def run(args, base_url: str, pid: int, tokens: list[str]) -> list[dict]:
    url = urlsplit(base_url)
    client = HTTPStream(url.hostname, url.port)
    for token in tokens[: args.warmup]:
        await one_stream(client, token, Level())
    users = tokens[args.warmup :]
    results = []
    for size in args.level_list:
        results.append(await run_level(client, users[:size], args.ramp, pid, args.timeout))
        await asyncio.sleep(2.0)  # the last turns' History rows and audit entries settle
    return results


def main() -> None:
    args = parse_args()
    _env, tokens = prepare(args)
    port = free_port()
    model = [sys.executable, str(ROOT / "bench" / "openai_stream_app.py")]
    with running(
        [*model, str(port), str(args.tokens), str(args.token_ms)],
        port=port,
        stdout=subprocess.DEVNULL,
    ):
        env = {
            **_env,
            "WORKGATE_AI_PROVIDER": "openai",
            "OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1",
            "OPENAI_API_KEY": "sk-bench",
            "WORKGATE_AI_MODEL": "bench-model",
        }
        with daphne(env) as (base_url, pid):
            levels = asyncio.run(run(args, base_url, pid, tokens))
    capacity = 0
    for level in sorted(levels, key=lambda level: level["streams"]):
        if not (level["all_complete"] and level["first_event_ms"]["p99"] < TARGET_MS):
            break
        capacity = level["streams"]
    at_most = max(levels, key=lambda level: level["streams"])
    results = {
        "tokens": args.tokens,
        "token_ms": args.token_ms,
        "ramp_s": args.ramp,
        "levels": levels,
        "capacity": capacity,
        "summary": [
            summary_row(
                f"concurrent streams with first event p99 < {TARGET_MS:.0f} ms "
                f"({1000 / args.token_ms:.0f} words/s answers)",
                capacity,
                "streams",
            ),
            summary_row(
                f"first event p99 with {at_most['streams']} such streams open",
                at_most["first_event_ms"]["p99"],
                "ms",
            ),
        ],
        "machine": machine(),
    }
    emit(results, args.json)


if __name__ == "__main__":
    main()
