"""Reading a provider's server-sent events: httpx-sse against a minimal hand-written parser, in
one run (run by hand, or by `make bench`; measures, never fails).

    .venv/bin/python bench/provider_sse.py [--words 2000] [--streams 10] [--rounds 5] [--json F]

The `openai` provider's client (streaming/providers/openai.py: httpx on asyncio's streams, the
SSE reader, JSON per chunk, the provider's events) reads answers from the loopback model server
(bench/openai_stream_app.py, a process of its own, sending `--words` one-word chunks as fast as
its socket takes them). Each round reads `--streams` answers at once with each reader in turn,
the order swapped every round; the figures are the median round. Per reader: events/s (wall
clock, both processes sharing the machine) and this process's CPU per event (everything the
client does for one chunk, of which the SSE reader is one part). Then each reader alone, in the
same alternation, over one recorded answer replayed from memory one event per read (as a model
pacing its words sends them): CPU per event of the reader and nothing else.

The anchor is `handwritten_sse_data`, the smallest correct reader of the `data` fields (what the
provider used before httpx-sse): it splits lines with httpx's own `aiter_lines`, so the
difference between the two is httpx-sse's line splitting and event object.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from common import ROOT, emit, free_port, machine, running, server_env, summary_row


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--words", type=int, default=2000, help="chunks in one answer")
    parser.add_argument("--streams", type=int, default=10, help="answers read at once")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the results here")
    return parser.parse_args()


async def handwritten_sse_data(response, provider: str = "") -> AsyncIterator[str]:
    """The `data` of each server-sent event, multi-line data joined with newlines."""
    data: list[str] = []
    async for line in response.aiter_lines():
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if name == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        yield "\n".join(data)


async def answer() -> int:
    """Read one answer through the openai provider; the number of events it yielded."""
    from streaming.providers.base import ModelRequest
    from streaming.providers.openai import OpenAISession

    session = OpenAISession(ModelRequest(model="bench-model", system="", inputs=["hi"], tools=[]))
    try:
        return sum([1 async for _ in session.round(tools_enabled=False)])
    finally:
        await session.aclose()


async def read_answers(streams: int) -> tuple[int, float, float]:
    """`streams` answers read at once: (events, wall seconds, CPU seconds of this process)."""
    began, cpu_began = time.perf_counter(), time.process_time()
    counts = await asyncio.gather(*(answer() for _ in range(streams)))
    return sum(counts), time.perf_counter() - began, time.process_time() - cpu_began


class _Replay(httpx.AsyncByteStream):
    def __init__(self, events: list[bytes]):
        self.events = events

    async def __aiter__(self):
        for event in self.events:
            yield event


async def reader_alone(reader, events: list[bytes]) -> float:
    """Microseconds of CPU per event for `reader` over `events` replayed from memory."""
    stream = _Replay(events)
    response = httpx.Response(200, headers={"Content-Type": "text/event-stream"}, stream=stream)
    began = time.process_time()
    count = sum([1 async for _ in reader(response)])
    return (time.process_time() - began) / count * 1e6


def recorded_answer(base_url: str) -> list[bytes]:
    """One answer of the model server, as its events."""
    body = httpx.post(f"{base_url}/chat/completions", json={}, timeout=60).content
    return [event + b"\n\n" for event in body.split(b"\n\n") if event]


def measure(args: argparse.Namespace) -> dict[str, list[dict]]:
    from django.conf import settings

    from streaming.providers import http, openai

    readers = {"httpx-sse": http.sse_data, "hand-written": handwritten_sse_data}
    rounds: dict[str, list[dict]] = {name: [] for name in readers}
    for reader in readers.values():  # warm up: imports, the TLS context, the first answer
        openai.sse_data = reader
        asyncio.run(read_answers(1))
    for number in range(args.rounds):
        order = list(readers) if number % 2 == 0 else list(reversed(readers))
        for name in order:
            openai.sse_data = readers[name]
            events, wall, cpu = asyncio.run(read_answers(args.streams))
            rounds[name].append(
                {
                    "events": events,
                    "events_per_s": round(events / wall),
                    "cpu_us_per_event": round(cpu / events * 1e6, 1),
                }
            )
    recorded = recorded_answer(settings.OPENAI_BASE_URL)
    for number in range(args.rounds):
        order = list(readers) if number % 2 == 0 else list(reversed(readers))
        for name in order:
            alone = asyncio.run(reader_alone(readers[name], recorded))
            rounds[name][number]["reader_alone_cpu_us_per_event"] = round(alone, 2)
    return rounds


def median_of(rounds: list[dict]) -> dict:
    return {
        key: statistics.median(r[key] for r in rounds)
        for key in ("events_per_s", "cpu_us_per_event", "reader_alone_cpu_us_per_event")
    } | {"rounds": rounds}


def main() -> None:
    args = parse_args()
    port = free_port()
    model = [sys.executable, str(ROOT / "bench" / "openai_stream_app.py")]
    with running([*model, str(port), str(args.words), "0"], port=port, stdout=subprocess.DEVNULL):
        env = server_env(
            database_url="sqlite://:memory:",  # the provider's client reads no database
            redis_url="",
            WORKGATE_AI_PROVIDER="openai",
            OPENAI_BASE_URL=f"http://127.0.0.1:{port}/v1",
        )
        os.environ.update({key: value for key, value in env.items() if key != "PYTHONPATH"})
        import django

        django.setup()
        rounds = measure(args)
    library, anchor = median_of(rounds["httpx-sse"]), median_of(rounds["hand-written"])
    results = {
        "benchmark": "provider_sse",
        "words": args.words,
        "streams": args.streams,
        "httpx_sse": library,
        "hand_written": anchor,
        "machine": machine(),
        "summary": [
            summary_row(
                metric,
                library[key],
                unit,
                anchor="hand-written parser",
                anchor_value=anchor[key],
                ratio=round(library[key] / anchor[key], 2),
            )
            for metric, key, unit in (
                (f"provider events read/s ({args.streams} answers at once)", "events_per_s", "/s"),
                ("provider client CPU per event", "cpu_us_per_event", "us"),
                ("SSE reader alone, CPU per event", "reader_alone_cpu_us_per_event", "us"),
            )
        ],
    }
    emit(results, args.json)


if __name__ == "__main__":
    main()
