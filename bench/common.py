"""Pieces the benchmarks share: a scratch server environment, one Daphne process, percentiles,
and a description of the machine. Optional: a bench script may do all of this itself.

Every benchmark runs the production settings module (DEBUG off) on loopback against a scratch
PostgreSQL database it recreates and a scratch Redis database it flushes, so a run never touches
the development or test databases and every run starts from the same empty state.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import secrets
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.processes import free_port, running  # noqa: E402

DAPHNE = ROOT / ".venv" / "bin" / "daphne"
POSTGRES_URL = "postgres://postgres@127.0.0.1:5432"


def server_env(*, database_url: str, redis_url: str, **overrides: str) -> dict[str, str]:
    """The environment of a production-like server: fresh keys, the given stores, quiet logs.

    Variables of the caller's own Workgate configuration are dropped so a developer's shell
    cannot change what is measured.
    """
    from cryptography.fernet import Fernet

    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("WORKGATE_", "DJANGO_", "OPENAI_", "ANTHROPIC_"))
        and key not in ("DEBUG", "SECRET_KEY", "DATABASE_URL", "REDIS_URL", "ALLOWED_HOSTS")
    }
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(50),
        WORKGATE_ENCRYPTION_KEY=Fernet.generate_key().decode(),
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        ALLOWED_HOSTS="127.0.0.1,localhost",
        WORKGATE_AI_PROVIDER="builtin",
        LOG_LEVEL="WARNING",
        # WhiteNoise warns that STATIC_ROOT is missing: benchmarks serve no static files.
        PYTHONWARNINGS="ignore:No directory at:UserWarning",
        PYTHONPATH=str(ROOT),
    )
    env.update(overrides)
    return env


def _admin_url(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.path.lstrip("/"), urlunsplit(parts._replace(path="/postgres"))


def recreate_database(url: str) -> None:
    import psycopg

    name, admin_url = _admin_url(url)
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')


def drop_database(url: str) -> None:
    import psycopg

    name, admin_url = _admin_url(url)
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def flush_redis(url: str) -> None:
    import redis

    redis.Redis.from_url(url).flushdb()


def prepare_database(env: dict[str, str]) -> None:
    """Recreate and migrate the scratch database, flush the scratch Redis database, and set up
    Django in this process on the same settings (for ORM setup steps)."""
    recreate_database(env["DATABASE_URL"])
    flush_redis(env["REDIS_URL"])
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True
    )
    os.environ.update({key: value for key, value in env.items() if key != "PYTHONPATH"})
    import django

    django.setup()


@contextlib.contextmanager
def daphne(
    env: dict[str, str],
    *,
    app: str = "config.asgi:application",
    cwd: Path = ROOT,
    backlog: int = 2048,
) -> Iterator[tuple[str, int]]:
    """One Daphne process serving `app` on a free loopback port: yields (base URL, pid)."""
    with daphnes(env, app=app, cwd=cwd, backlog=backlog, processes=1) as (base_url, [pid]):
        yield base_url, pid


@contextlib.contextmanager
def daphnes(
    env: dict[str, str],
    *,
    processes: int,
    app: str = "config.asgi:application",
    cwd: Path = ROOT,
    backlog: int = 2048,
) -> Iterator[tuple[str, list[int]]]:
    """`processes` Daphne processes serving `app` on one free loopback port: yields (base URL,
    pids). Several share one listening socket, which the kernel hands each connection from (as
    systemd's socket activation would), one process per core as deployment.md runs them."""
    port = free_port()
    env = {**env, "PYTHONPATH": os.pathsep.join([str(cwd), env.get("PYTHONPATH", "")])}
    # Twisted's default listen backlog is 50: a burst of connections would wait on SYN retries,
    # measuring the kernel's queue instead of the server.
    if processes == 1:
        endpoints = [[f"tcp:port={port}:interface=127.0.0.1:backlog={backlog}"]]
        listener = None
    else:
        listener = socket.create_server(("127.0.0.1", port), backlog=backlog)
        listener.set_inheritable(True)
        endpoints = [[f"fd:fileno={listener.fileno()}"]] * processes
    with contextlib.ExitStack() as stack:
        if listener is not None:
            stack.enter_context(listener)
        procs = [
            stack.enter_context(
                running(
                    [DAPHNE, "-e", *endpoint, app],
                    port=port,
                    env=env,
                    cwd=cwd,
                    stdout=subprocess.DEVNULL,
                    pass_fds=[listener.fileno()] if listener is not None else [],
                )
            )
            for endpoint in endpoints
        ]
        yield f"http://127.0.0.1:{port}", [proc.pid for proc in procs]


def cpu_seconds(*pids: int) -> float:
    """User + system CPU time the processes and their exited children have used so far
    (websockify forks one child per connection)."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += sum(int(value) for value in fields[11:15])  # utime, stime, cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


# --- Numbers -----------------------------------------------------------------------------------


def summary_row(
    metric: str,
    value,
    unit: str,
    *,
    anchor: str = "",
    anchor_value=None,
    ratio: float | None = None,
    target: str = "",
    met: bool | None = None,
) -> dict:
    """One row of a script's `summary`, the shape bench/run_all.py prints and writes."""
    return {
        "metric": metric,
        "value": value,
        "unit": unit,
        "anchor": anchor,
        "anchor_value": anchor_value,
        "ratio": ratio,
        "target": target,
        "met": met,
    }


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile: the smallest value with at least `fraction` of them at or below."""
    if not values:
        return math.nan
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))
    return ordered[index]


def latency_summary(seconds: list[float]) -> dict[str, float]:
    """p50/p90/p99/max and mean of latencies given in seconds, in milliseconds."""
    ms = [value * 1000.0 for value in seconds]
    return {
        "n": len(ms),
        "p50": round(percentile(ms, 0.50), 2),
        "p90": round(percentile(ms, 0.90), 2),
        "p99": round(percentile(ms, 0.99), 2),
        "max": round(max(ms), 2) if ms else math.nan,
        "mean": round(sum(ms) / len(ms), 2) if ms else math.nan,
    }


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# --- The machine -------------------------------------------------------------------------------


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    return math.nan


def _postgres_version() -> str:
    with contextlib.suppress(Exception):
        import psycopg

        with psycopg.connect(f"{POSTGRES_URL}/postgres", connect_timeout=3) as connection:
            return connection.execute("SHOW server_version").fetchone()[0].split()[0]
    return "unavailable"


def _redis_version() -> str:
    with contextlib.suppress(Exception):
        import redis

        return redis.Redis(host="127.0.0.1", port=6379, socket_timeout=3).info("server")[
            "redis_version"
        ]
    return "unavailable"


def _package_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def machine() -> dict[str, object]:
    """What the numbers were measured on."""
    return {
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "django": _package_version("django"),
        "daphne": _package_version("daphne"),
        "twisted": _package_version("twisted"),
        "postgresql": _postgres_version(),
        "redis": _redis_version(),
        "wrk": "installed" if shutil.which("wrk") else "not installed",
    }


def emit(results: dict, json_path: Path | None) -> None:
    """Print the results as JSON and, when asked, write them to `json_path` for run_all.py."""
    text = json.dumps(results, indent=2)
    print(text)
    if json_path is not None:
        json_path.write_text(text + "\n")
