"""The ORM from the assistant's async code: a small, bounded pool of threads.

Django would run each request's synchronous work in a thread of its own, and each such thread
holds its own database connection. Five hundred open streams must not mean five hundred
PostgreSQL connections, so every ORM call made while a turn runs (the request's checks, the
tools, the history) goes through this pool instead; the connection is closed after each call,
as `database_sync_to_async` does, so the pool never holds an idle or broken one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from channels.db import DatabaseSyncToAsync

# Enough for the slowest call (a launch that waits for its desktop) not to stall everyone else,
# few enough to stay far below PostgreSQL's default max_connections of 100.
POOL_SIZE = 16

_pool = ThreadPoolExecutor(max_workers=POOL_SIZE, thread_name_prefix="assistant-db")

P = ParamSpec("P")
R = TypeVar("R")


def in_db_thread(function: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """`function` as a coroutine function that runs in the pool."""
    return DatabaseSyncToAsync(function, thread_sensitive=False, executor=_pool)
