"""The ORM from the assistant's async code: a small, bounded pool of threads.

Django would run each request's synchronous work in a thread of its own, and each such thread
opens its own database connection. Five hundred open streams must not mean five hundred
PostgreSQL connections, so every ORM call made while a turn runs (the request's checks, the
tools, the history) goes through this pool instead.

Each pool thread keeps its connection from one call to the next (at most POOL_SIZE connections
in all): opening a PostgreSQL connection costs more than a turn's queries. Django's own rules
still drop one that is broken, was left mid-transaction, or is older than CONNECTION_MAX_AGE.
With Django's connection pool (PostgreSQL, WORKGATE_DB_POOL_SIZE) a thread gives its
connection back after each call instead: borrowing is cheap, and idle threads hold none.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from asgiref.sync import SyncToAsync
from django.db import connections

# Enough for the slowest call (a launch that waits for its desktop) not to stall everyone else,
# few enough to stay far below PostgreSQL's default max_connections of 100.
POOL_SIZE = 16
CONNECTION_MAX_AGE = 300.0

_pool = ThreadPoolExecutor(max_workers=POOL_SIZE, thread_name_prefix="assistant-db")
_local = threading.local()

P = ParamSpec("P")
R = TypeVar("R")


def _tidy_connections() -> None:
    """Close this thread's connections that Django would not reuse, with our maximum age; a
    connection from Django's pool goes back to it after every call (it costs nothing to borrow
    again, and the pool is shared with every request of the process)."""
    known = _local.__dict__.setdefault("connections", {})
    for connection in connections.all(initialized_only=True):
        if connection.connection is None:
            continue
        if getattr(connection, "pool", None) is not None:
            connection.close()
            continue
        if known.get(connection.alias) is not connection.connection:
            # A new connection: Django set its expiry from CONN_MAX_AGE; the pool's is longer.
            known[connection.alias] = connection.connection
            connection.close_at = time.monotonic() + CONNECTION_MAX_AGE
        connection.close_if_unusable_or_obsolete()


class _InPool(SyncToAsync):
    def thread_handler(self, loop, *args, **kwargs):
        _tidy_connections()
        try:
            return super().thread_handler(loop, *args, **kwargs)
        finally:
            _tidy_connections()


def in_db_thread(function: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """`function` as a coroutine function that runs in the pool."""
    return _InPool(function, thread_sensitive=False, executor=_pool)


def close_connections(timeout: float = 10.0) -> None:
    """Close every pool thread's connections (before dropping a database, or at shutdown).

    One job per thread: each closes its own connections (Django connections belong to their
    thread) and waits at a barrier, so no thread can take two jobs while another takes none.
    """
    barrier = threading.Barrier(POOL_SIZE)

    def close() -> None:
        connections.close_all()
        _local.__dict__.pop("connections", None)
        barrier.wait(timeout)

    for future in [_pool.submit(close) for _ in range(POOL_SIZE)]:
        future.result(timeout)
