"""Run every benchmark, print one table, and rewrite docs/benchmarks.md's summary (`make bench`).

    .venv/bin/python bench/run_all.py [--only tickets,launch] [--skip relay] [--no-write]

Each benchmark is a script in bench/ run as its own process, one after the other (they would
otherwise compete for the same cores), with `--json <file>`. A script's results may carry a
`summary` list of rows ({metric, value, unit, anchor, anchor_value, ratio, target, met}); for a
script that has none, an adapter below reads its own keys, and for one that takes no `--json`
the last JSON object it prints is read instead. A missing script, or one that fails, is reported
in the table and does not stop the others. Raw results and logs go to .runtime/bench/.

docs/benchmarks.md is rewritten only between its `<!-- bench:NAME:start -->` and
`<!-- bench:NAME:end -->` markers: the header (machine and method), the summary table, and the
sections of the ticket, launch, container and sustained-streams benchmarks; every other section
is its owner's prose and is left alone. A partial run (--only/--skip) writes the document only with
--write.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from common import ROOT, machine, summary_row

RESULTS_DIR = ROOT / ".runtime" / "bench"
DOC = ROOT / "docs" / "benchmarks.md"
TIMEOUT = 45 * 60  # seconds one script may take


@dataclass
class Bench:
    name: str
    script: str
    title: str
    args: list[str] = field(default_factory=list)
    adapter: Callable[[dict], list[dict]] | None = None


@dataclass
class Outcome:
    bench: Bench
    status: str  # ok | missing | failed | timeout
    results: dict | None = None
    rows: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    note: str = ""


# --- Adapters for scripts whose results carry no `summary` ----------------------------------------


def sse_rows(results: dict) -> list[dict]:
    streams = results.get("streams")
    outcomes = results.get("outcomes") or {}
    complete = outcomes.get("complete", 0)
    first = (results.get("first_event_ms") or {}).get("p99")
    floor = (((results.get("floor") or {}).get("median") or {}).get("first_event_ms") or {}).get(
        "p99"
    )
    return [
        summary_row(
            f"{streams} concurrent SSE streams complete",
            complete,
            f"of {streams}",
            target="all",
            met=bool(results.get("all_complete")),
        ),
        summary_row(
            "SSE time to first event p99 (median of 3 bursts)",
            first,
            "ms",
            anchor="Daphne alone, a no-op SSE app, same burst",
            anchor_value=floor,
            ratio=results.get("first_event_p99_vs_floor"),
            target="< 250 ms",
            met=first is not None and first < 250,
        ),
        # The same target read against Daphne with no application: whether this machine leaves
        # any room for one at all.
        summary_row(
            "SSE first event p99 of the no-op floor itself (no application work)",
            floor,
            "ms",
            target="< 250 ms, for reference",
            met=floor is not None and floor < 250,
        ),
        summary_row("SSE server CPU per stream", results.get("server_cpu_ms_per_stream"), "ms"),
        summary_row("SSE memory per open stream", results.get("kib_per_open_stream"), "KiB"),
    ]


BENCHES = [
    Bench("relay", "bench/relay.py", "VNC relay vs websockify"),
    # Openings again as deployment.md runs the gateway: one Daphne process per core.
    Bench(
        "relay_per_core",
        "bench/relay.py",
        "VNC relay openings, one Daphne process per core",
        args=["--only", "openings", "--processes", str(os.cpu_count() or 1)],
    ),
    Bench("sse", "bench/sse_load.py", "Assistant SSE streams", adapter=sse_rows),
    Bench("sustained", "bench/sse_sustained.py", "Assistant streams that last"),
    Bench("provider_sse", "bench/provider_sse.py", "Reading a provider's events"),
    Bench("socketio", "bench/socketio_fanout.py", "Socket.IO fan-out vs python-socketio"),
    Bench("tickets", "bench/tickets.py", "Ticket minting"),
    Bench("launch", "bench/launch_ready.py", "Launch to ready"),
    Bench("containers", "bench/containers.py", "Container desktops: launch to ready"),
    Bench("app_proxy", "bench/app_proxy.py", "Web apps through the gateway vs nginx proxy_pass"),
]


# --- Running --------------------------------------------------------------------------------------


def _last_json_object(text: str) -> dict | None:
    """The last top-level JSON object printed (a script that takes no --json)."""
    decoder = json.JSONDecoder()
    found = None
    for match in re.finditer(r"^\{", text, re.M):
        try:
            value, _ = decoder.raw_decode(text[match.start() :])
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            found = value
    return found


def run_bench(bench: Bench) -> Outcome:
    script = ROOT / bench.script
    if not script.exists():
        return Outcome(bench, "missing", note=f"{bench.script} does not exist yet")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"{bench.name}.json"
    log = RESULTS_DIR / f"{bench.name}.log"
    out.unlink(missing_ok=True)
    argv = [sys.executable, str(script), *bench.args]
    print(f"== {bench.name}: {' '.join(argv[1:])} --json {out.relative_to(ROOT)}", flush=True)
    began = time.monotonic()
    try:
        completed = _run([*argv, "--json", str(out)], log)
        if completed.returncode == 2 and "--json" in completed.stderr:
            # argparse refused the option: the script reports on stdout only.
            completed = _run(argv, log)
    except subprocess.TimeoutExpired:
        return Outcome(bench, "timeout", seconds=time.monotonic() - began, note=f"see {log}")
    seconds = time.monotonic() - began
    if completed.returncode != 0:
        tail = (completed.stderr.strip().splitlines() or ["no output"])[-1]
        return Outcome(
            bench, "failed", seconds=seconds, note=f"exit {completed.returncode}: {tail}"
        )
    results = json.loads(out.read_text()) if out.exists() else _last_json_object(completed.stdout)
    if results is None:
        return Outcome(bench, "ok", seconds=seconds, note="printed no JSON results; see its log")
    rows = results.get("summary") or (bench.adapter(results) if bench.adapter else [])
    return Outcome(bench, "ok", results=results, rows=rows, seconds=seconds)


def _run(argv: list[str], log: Path) -> subprocess.CompletedProcess:
    completed = subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    log.write_text(f"$ {' '.join(argv)}\n{completed.stdout}\n--- stderr\n{completed.stderr}")
    return completed


# --- The table ------------------------------------------------------------------------------------

COLUMNS = ("Benchmark", "Metric", "Workgate", "Anchor", "Ratio", "Target", "Met")


def _number(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def table_rows(outcomes: list[Outcome]) -> list[tuple[str, ...]]:
    rows = []
    for outcome in outcomes:
        if outcome.status != "ok" or not outcome.rows:
            note = outcome.note or "no summary rows"
            rows.append(
                (outcome.bench.title, f"not measured: {outcome.status}", note, "", "", "", "")
            )
            continue
        for row in outcome.rows:
            unit = row.get("unit") or ""
            value = f"{_number(row.get('value'))} {unit}".strip()
            anchor = row.get("anchor") or ""
            if row.get("anchor_value") is not None:
                anchor = f"{anchor}: {_number(row['anchor_value'])} {unit}".strip()
            ratio = row.get("ratio")
            met = row.get("met")
            rows.append(
                (
                    outcome.bench.title,
                    row.get("metric", ""),
                    value,
                    anchor,
                    f"{ratio:.2f}x" if isinstance(ratio, int | float) else "",
                    row.get("target") or "",
                    {True: "yes", False: "NO", None: ""}[met],
                )
            )
    return rows


def text_table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(column), *(len(row[i]) for row in rows)) for i, column in enumerate(COLUMNS)]
    line = "  ".join(column.ljust(width) for column, width in zip(COLUMNS, widths, strict=True))
    out = [line, "  ".join("-" * width for width in widths)]
    for row in rows:
        out.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    return "\n".join(out)


def markdown_table(rows: list[tuple[str, ...]]) -> str:
    out = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        out.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    return "\n".join(out)


# --- docs/benchmarks.md ---------------------------------------------------------------------------


def header_markdown(info: dict, when: str, load: tuple[float, float]) -> str:
    memory = info.get("memory_gib")
    return f"""Measured by `make bench` (`bench/run_all.py`) on {when}; the machine's load average
was {load[0]:.1f} when the run started and {load[1]:.1f} when it ended (anything above 0 is other
work sharing the cores, which slows absolute figures more than ratios).

**Machine:** {info["cpu"]}, {info["cpus"]} CPUs, {memory} GiB RAM, {info["os"]}; Python \
{info["python"]}, Django {info["django"]}, Daphne {info["daphne"]} (Twisted {info["twisted"]}), \
PostgreSQL {info["postgresql"]}, Redis {info["redis"]}.

**Method.** Every benchmark is a script in `bench/`, run on its own (never in `make test`), one
after the other, client and server on the same machine over loopback. Servers run the production
settings module with `DEBUG` off against a scratch PostgreSQL database and a scratch Redis
database that each script recreates, so runs start from the same state. Each ratio compares
Workgate with its anchor (websockify, python-socketio, a trivial authenticated endpoint, the
same desktop started by hand) measured by the same script in the same run; a ratio from one
machine is the number to compare, absolute figures move with the machine. Raw results of the
last run are in `.runtime/bench/*.json`; each section below says what its script does."""


def tickets_markdown(results: dict) -> str:
    trivial, ticket, serial = results["trivial"], results["ticket"], results["serial"]
    client = "wrk" if results["client"] == "wrk" else "an httpx async client"
    lines = [
        f"One Daphne process; {client} with {results['concurrency']} keep-alive connections, "
        f"{results['rounds']} alternating rounds of {results['duration_s']:g} s per endpoint "
        "(figures are the median round), after a one-connection pass for unloaded latency. "
        "The ticket endpoint's rate limit is raised so it counts but never refuses. "
        f"{results['tickets_stored']:,} tickets were minted and stored in all.",
        "",
        "| | req/s | p50 ms | p90 ms | p99 ms | failed | p50, 1 connection |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, data, alone in (
        (trivial["endpoint"] + " (anchor)", trivial, serial["trivial"]),
        (ticket["endpoint"], ticket, serial["ticket"]),
    ):
        lines.append(
            f"| `{label}` | {data['rps']:,.0f} | {data['p50']:.1f} | {data['p90']:.1f} | "
            f"{data['p99']:.1f} | {data['failed']} | {alone['p50']:.1f} ms |"
        )
    verdict = "meets" if results["ratio_p50"] <= 2.0 else "misses"
    lines += [
        "",
        f"Ratio ticket/anchor: p50 **{results['ratio_p50']:.2f}x** ({verdict} the <= 2x target), "
        f"p99 {results['ratio_p99']:.2f}x, throughput {results['ratio_rps']:.2f}x; "
        f"unloaded p50 {results['serial_ratio_p50']:.2f}x.",
    ]
    return "\n".join(lines)


def launch_markdown(results: dict) -> str:
    launch, bare, stop = results["launch_ms"], results["bare_desktop_ms"], results["stop_ms"]
    relay = results.get("ticket_and_relay_greeting_ms")
    lines = [
        f"{results['runs']} launches of `ws-linux-desktop` (Xvfb + x11vnc + xterm) through one "
        "Daphne process after one warm-up launch, each followed by a stop. The launch answers "
        "once the desktop's VNC server greets (`status: ready`). The anchor starts the same "
        "three programs by hand in the provisioner's order, polling for the greeting as it does "
        "(every 50 ms).",
        "",
        "| | p50 ms | p90 ms | p99 ms | max ms |",
        "|---|---|---|---|---|",
        _dist_row("POST /api/workspaces/ws-linux-desktop/launch (to ready)", launch),
        _dist_row("the same desktop by hand (anchor)", bare),
    ]
    if relay:
        lines.append(_dist_row("then ticket + relay until the RFB greeting", relay))
    lines.append(_dist_row("POST .../stop", stop))
    lines += ["", f"Launch/anchor p50: **{results['ratio_p50']:.2f}x** (no target set)."]
    if results.get("failures"):
        lines.append(f"Failures: {'; '.join(results['failures'][:5])}")
    return "\n".join(lines)


def containers_markdown(results: dict) -> str:
    limits = results["limits"]
    modes = results["modes"]
    lines = [
        f"{results['runs']} launches of `ws-linux-desktop` (`{results['image']}`, image "
        f"{results['image_id']}) on {results['engine']}, through one Daphne process per way of "
        "networking desktops, after one warm-up, alternating with the anchor, each followed by "
        "a stop. The launch answers `starting`; the client polls its session every 50 ms "
        "until `ready`, which the gateway's readiness thread sets once the desktop greets (it "
        "probes every 200 ms). The anchor: the same network by hand where the session has its "
        "own (`podman network create --internal`, isolated), `podman run -d` of the same image "
        f"with the same limits ({limits['cpus']} CPUs, {limits['memory_bytes'] // 2**20} MiB, "
        f"{limits['pids']} pids, `--cap-drop ALL`, no-new-privileges, `VNC_PW` from the "
        "environment) on it, `podman inspect` for its address, its greeting polled there every "
        "50 ms; then `podman rm -f` (and `podman network rm`).",
        "",
        "| network | | p50 ms | p90 ms | p99 ms | max ms |",
        "|---|---|---|---|---|---|",
    ]
    for mode in modes.values():
        where = mode["network"]
        rows = [
            ("POST .../launch, until it answers `starting`", mode["launch_answered_ms"]),
            ("POST .../launch, until the session is `ready`", mode["launch_ms"]),
            ("by hand, until it greets (anchor)", mode["by_hand_ms"]),
            ("then ticket + relay until the RFB greeting", mode["ticket_and_relay_greeting_ms"]),
            ("POST .../stop (removes it)", mode["stop_ms"]),
            ("removed by hand", mode["by_hand_remove_ms"]),
        ]
        lines += [_dist_row(f"{where} | {label}", data) for label, data in rows if data]
    lines.append("")
    for mode in modes.values():
        ratio = mode["ratio_p50"]
        if ratio is None:
            lines.append(f"Launch/anchor p50 on {mode['network']}: not measured (see failures).")
            continue
        verdict = "meets" if ratio <= 1.2 else "misses"
        lines.append(
            f"Launch/anchor p50 on {mode['network']}: **{ratio:.2f}x** ({verdict} the <= 1.2x "
            "target)."
        )
    bursts = [mode for mode in modes.values() if mode.get("burst") and mode.get("burst_by_hand")]
    if bursts:
        first = bursts[0]["burst"]
        lines += [
            "",
            f"{first['launches']} users launch at once, one desktop each (each polls its session "
            "every 200 ms), then all stop at once; the anchor starts as many desktops at once "
            "by hand, then removes them at once.",
            "",
            "| network | | ready | all ready ms | each: p50 ms | p90 ms | max ms | answered "
            "`starting`, p50 ms | all stopped ms |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for mode in bursts:
            for label, data in (("Workgate", mode["burst"]), ("by hand", mode["burst_by_hand"])):
                each, answered = data["ready_ms"], data.get("answered_ms")
                lines.append(
                    f"| {mode['network']} | {label} | {data['ready']} of {data['launches']} | "
                    f"{_ms(data['all_ready_ms'])} | {_ms(each['p50'])} | {_ms(each['p90'])} | "
                    f"{_ms(each['max'])} | {_ms(answered['p50']) if answered else ''} | "
                    f"{_ms(data['all_stopped_ms'])} |"
                )
        lines.append("")
        lines += [
            f"All ready, Workgate/anchor, on {mode['network']}: **{mode['burst_ratio']:.2f}x**."
            for mode in bursts
            if mode.get("burst_ratio") is not None
        ]
    failures = [
        failure
        for mode in modes.values()
        for failure in mode["failures"]
        + [f for key in ("burst", "burst_by_hand") if mode.get(key) for f in mode[key]["failures"]]
    ]
    if failures:
        lines.append(f"Failures: {'; '.join(failures[:5])}")
    return "\n".join(lines)


def sustained_markdown(results: dict) -> str:
    words_per_s = 1000 / results["token_ms"]
    lines = [
        f"One Daphne process, the `openai` provider against a loopback model server answering "
        f"{results['tokens']} words at {words_per_s:.0f} a second "
        f"({results['tokens'] * results['token_ms'] / 1000:g} s per answer). Each level opens "
        f"its streams at a steady pace over {results['ramp_s']:g} s, so all are open together.",
        "",
        "| streams | complete | first event p50 / p99 ms | first word p50 / p99 ms | "
        "longest wait between words, p99 over streams, ms | server CPU per stream |",
        "|---|---|---|---|---|---|",
    ]
    for level in results["levels"]:
        complete = level["outcomes"].get("complete", 0)
        first, word = level["first_event_ms"], level["first_word_ms"]
        lines.append(
            f"| {level['streams']} | {complete} | {_ms(first['p50'])} / {_ms(first['p99'])} | "
            f"{_ms(word['p50'])} / {_ms(word['p99'])} | {_ms(level['longest_gap_ms_p99'])} | "
            f"{level['server_cpu_ms_per_stream']:.1f} ms |"
        )
    lines += [
        "",
        "Carried with every stream complete and the first event under 250 ms at p99, at that "
        f"level and every level below it: **{results['capacity']} streams** (the model's own "
        f"pace between words: {results['token_ms']} ms).",
    ]
    return "\n".join(lines)


def _ms(value) -> str:
    """A figure in milliseconds, or a dash where there was none to measure."""
    return "-" if value is None or value != value else f"{value:,.0f}"


def _dist_row(label: str, data: dict) -> str:
    return (
        f"| {label} | {data['p50']:.0f} | {data['p90']:.0f} | {data['p99']:.0f} | "
        f"{data['max']:.0f} |"
    )


SKELETON = """# Benchmarks

<!-- bench:header:start -->
<!-- bench:header:end -->

## Summary

<!-- bench:summary:start -->
<!-- bench:summary:end -->
"""


def replace_block(text: str, name: str, body: str, *, heading: str | None = None) -> str:
    """Put `body` between the markers of block `name`, appending the block when it is absent."""
    start, end = f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"
    block = f"{start}\n{body.strip()}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        return pattern.sub(lambda _match: block, text, count=1)
    prefix = f"\n## {heading}\n\n" if heading else "\n"
    return text.rstrip("\n") + "\n" + prefix + block + "\n"


def write_doc(outcomes: list[Outcome], info: dict, rows, load: tuple[float, float]) -> None:
    text = DOC.read_text() if DOC.exists() else SKELETON
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = replace_block(text, "header", header_markdown(info, when, load))
    text = replace_block(text, "summary", markdown_table(rows), heading="Summary")
    sections = {
        "tickets": tickets_markdown,
        "launch": launch_markdown,
        "containers": containers_markdown,
        "sustained": sustained_markdown,
    }
    for outcome in outcomes:
        render = sections.get(outcome.bench.name)
        if render and outcome.results:
            text = replace_block(
                text, outcome.bench.name, render(outcome.results), heading=outcome.bench.title
            )
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(text)


# --- Main -----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    names = [bench.name for bench in BENCHES]
    parser.add_argument("--only", help=f"comma-separated, of: {', '.join(names)}")
    parser.add_argument("--skip", default="", help="comma-separated names to leave out")
    parser.add_argument("--write", action="store_true", help="write the doc after a partial run")
    parser.add_argument("--no-write", action="store_true", help="never write docs/benchmarks.md")
    args = parser.parse_args()
    chosen = set(args.only.split(",")) if args.only else set(names)
    chosen -= set(filter(None, args.skip.split(",")))
    unknown = chosen - set(names)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")

    info = machine()
    load_before = os.getloadavg()[0]
    outcomes = [run_bench(bench) for bench in BENCHES if bench.name in chosen]
    load = (load_before, os.getloadavg()[0])
    rows = table_rows(outcomes)
    print()
    print(text_table(rows))
    partial = chosen != set(names)
    if not args.no_write and (args.write or not partial):
        write_doc(outcomes, info, rows, load)
        print(f"\nwrote {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
