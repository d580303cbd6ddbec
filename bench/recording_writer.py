"""The recording writer's cost (issue 22): CPU per MB of relayed bytes, and what it does to the
event loop that calls `put`.

    .venv/bin/python bench/recording_writer.py [--mb 256] [--rounds 3] [--json FILE]

Run by hand; it measures and never fails. No server, no database: one event loop feeds a
`RecordingSink` (recordings/writer.py) on a directory store in a scratch directory on the
project's disk (`.runtime/bench-recordings`, removed after), in 64 KiB chunks as the relay reads
them, pausing when the sink says so and resuming when it says so, as the relay will. Three
inputs:
- `pixels`: Raw rects of a terminal-like screen (rows of repeating glyph patterns), which
  compresses like Hextile does (zstd is used);
- `random`: `os.urandom`, standing for Tight/JPEG output that does not compress (the 64 KiB
  probe stores it as is);
- `filler`: one repeated byte, bench/relay.py's bulk payload;
- `off`: the baseline, the same loop with `random` and nothing recording.

Per input and round: the writer thread's own CPU time (read from outside the thread, by its
CPU-time clock, `time.pthread_getcpuclockid`: recordings/writer.py keeps no counter), the
whole process's CPU time (the feeding loop included), the stored size against the input, the
`put` cost, and the loop's lateness: a task asking for a 1 ms sleep, its worst and p99 overshoot
while the writer works. Figures are the median over the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import shutil
import statistics
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from recordings.format import Kind, new_data_key  # noqa: E402
from recordings.storage import DirectoryStore  # noqa: E402
from recordings.writer import RecordingSink  # noqa: E402

CHUNK = 64 << 10
MB = 1_000_000


def pixels_input() -> list[bytes]:
    """Screens of terminal text as 32-bit Raw pixels: 8x16 glyphs of a 95-glyph font, each
    cell in one of 16 colours on black, 100 columns by 40 lines (800x640), 24 screens."""
    rng = random.Random(22)
    palette = [bytes([rng.randrange(256) for _ in range(3)]) + b"\0" for _ in range(16)]
    font = [[rng.randrange(256) for _ in range(16)] for _ in range(95)]
    black = b"\0" * 4
    screens = []
    for _ in range(24):
        for _line in range(40):
            cells = [(rng.choice(font), rng.choice(palette)) for _ in range(100)]
            for row in range(16):
                screens.append(
                    b"".join(
                        b"".join(colour if glyph[row] >> bit & 1 else black for bit in range(8))
                        for glyph, colour in cells
                    )
                )
    stream = b"".join(screens)
    return [stream[start : start + CHUNK] for start in range(0, len(stream) - CHUNK, CHUNK)]


def inputs() -> dict[str, list[bytes]]:
    return {
        "pixels": pixels_input(),
        "random": [os.urandom(CHUNK) for _ in range(64)],
        "filler": [b"\x5a" * CHUNK],
        "off": [os.urandom(CHUNK) for _ in range(64)],
    }


def writer_cpu_seconds() -> float:
    """The recording writer thread's CPU time so far (0 before a sink has started it), read
    through its CPU-time clock from this thread."""
    for thread in threading.enumerate():
        if thread.name == "recording-writer" and thread.ident is not None:
            return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
    return 0.0


class Unrecorded:
    """The baseline: the same feeding loop with nothing recording (a deque that is dropped)."""

    def __init__(self) -> None:
        self.queue = collections.deque()
        self.size = 0

    def put(self, kind: int, participant: int, data: bytes) -> None:
        self.queue.append(data)
        if len(self.queue) > 64:
            self.queue.clear()


async def one_run(chunks: list[bytes], total: int, directory: Path, record: bool = True) -> dict:
    loop = asyncio.get_running_loop()
    resumed = asyncio.Event()
    resumed.set()
    store = DirectoryStore(directory)
    recording = f"bench-{time.monotonic_ns()}"
    if record:
        spool = store.open_spool(recording, datetime.now(UTC))
        sink = RecordingSink(
            spool,
            key=new_data_key(),
            recording_id=recording,
            loop=loop,
            on_pause=resumed.clear,
            on_resume=resumed.set,
        )
    else:
        sink = Unrecorded()
    lateness: list[float] = []
    feeding = True

    async def heartbeat() -> None:
        while feeding:
            asked = time.perf_counter()
            await asyncio.sleep(0.001)
            lateness.append(time.perf_counter() - asked - 0.001)

    beat = asyncio.create_task(heartbeat())
    # The writer thread starts with the first sink and lives on: read its clock after the sink.
    cpu_writer, cpu_process, wall = writer_cpu_seconds(), time.process_time(), time.perf_counter()
    put_time = 0.0
    puts = 0
    fed = 0
    while fed < total:
        for chunk in chunks:
            if not resumed.is_set():
                await resumed.wait()
            before = time.perf_counter_ns()
            sink.put(Kind.TO_VIEWER, 1, chunk)
            put_time += time.perf_counter_ns() - before
            puts += 1
            fed += len(chunk)
            if puts % 16 == 0:
                await asyncio.sleep(0)  # the relay returns to the loop between reads
            if fed >= total:
                break
    seal = await sink.close({"closed_by": "bench"}) if record else sink
    await asyncio.sleep(0.05)  # the writer thread finishes its last pass after the close
    wall = time.perf_counter() - wall
    cpu_process = time.process_time() - cpu_process
    cpu_writer = writer_cpu_seconds() - cpu_writer
    feeding = False
    await beat
    if record:
        store.delete(spool.object_key)
    lateness.sort()
    return {
        "mb": fed / MB,
        "writer_ms_per_mb": cpu_writer * 1000 / (fed / MB),
        "process_ms_per_mb": cpu_process * 1000 / (fed / MB),
        "stored_ratio": seal.size / fed,
        "mb_per_s": fed / MB / wall,
        "put_us": put_time / puts / 1000,
        "loop_late_p99_ms": lateness[int(len(lateness) * 0.99)] * 1000 if lateness else 0.0,
        "loop_late_max_ms": lateness[-1] * 1000 if lateness else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=256, help="MB fed per input and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", help="write the results here too")
    options = parser.parse_args()
    directory = ROOT / ".runtime" / "bench-recordings"
    data = inputs()
    results: dict[str, list[dict]] = {name: [] for name in data}
    try:
        for _ in range(options.rounds):
            for name, chunks in data.items():  # alternating, so load drifts hit all alike
                run = one_run(chunks, options.mb * MB, directory, record=name != "off")
                results[name].append(asyncio.run(run))
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    summary = {
        name: {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        for name, runs in results.items()
    }
    print(f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, {options.mb} MB per input")
    print(
        f"{'input':8} {'writer ms/MB':>12} {'process ms/MB':>13} {'stored':>7} {'MB/s':>7} "
        f"{'put µs':>7} {'loop late p99/max ms':>21}"
    )
    for name, row in summary.items():
        print(
            f"{name:8} {row['writer_ms_per_mb']:12.2f} {row['process_ms_per_mb']:13.2f} "
            f"{row['stored_ratio']:7.3f} {row['mb_per_s']:7.0f} {row['put_us']:7.2f} "
            f"{row['loop_late_p99_ms']:10.2f} / {row['loop_late_max_ms']:.2f}"
        )
    if options.json:
        Path(options.json).write_text(json.dumps({"summary": summary, "runs": results}, indent=2))


if __name__ == "__main__":
    main()
