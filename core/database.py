"""The one way async code reaches the ORM: `in_db_thread`, on small, bounded pools of threads.

Every coroutine that reads or writes the database (the assistant's turns and tools, the relay's
bookkeeping, Socket.IO's sign-in, async tests) wraps the synchronous ORM code with
`in_db_thread`. Neither Channels' `database_sync_to_async` nor a bare `sync_to_async` is used:
each has connection rules of its own, and the first closes connections outside the thread that
opened them, where a call that is not thread-sensitive cannot see them.

Django would run each request's synchronous work in a thread of its own, and each such thread
opens its own database connection. Five hundred open streams must not mean five hundred
PostgreSQL connections, so the threads are pooled: SHARED (16 threads) for the assistant and
everything else, and RELAY for the desktop relay's bookkeeping alone, so that opening a desktop
never queues behind a slow call of the assistant (a launch that waits for its desktop).

Each pool thread keeps its connection from one call to the next (at most a pool's size in
connections): opening a PostgreSQL connection costs more than a call's queries. Django's own
rules still drop one that is broken, was left mid-transaction, or is older than
CONNECTION_MAX_AGE. With Django's connection pool (PostgreSQL, WORKGATE_DB_POOL_SIZE) a thread
gives its connection back after each call instead: borrowing is cheap, and idle threads hold
none.
"""

from __future__ import annotations

import os
import select
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from asgiref.sync import SyncToAsync
from django.db import connections
from psycopg_pool import ConnectionPool

CONNECTION_MAX_AGE = 300.0

P = ParamSpec("P")
R = TypeVar("R")

_local = threading.local()


class DatabaseThreads:
    """A bounded pool of threads that run ORM calls for async code. With `keep_connections`
    off, a thread closes its connection after each call (Django's pool, when on, takes it back
    either way)."""

    def __init__(self, name: str, size: int, *, keep_connections: bool = True):
        self.size = size
        self.keep_connections = keep_connections
        self.executor = ThreadPoolExecutor(max_workers=size, thread_name_prefix=name)

    def close_connections(self, timeout: float = 10.0) -> None:
        """Close every thread's connections (before dropping a database, or at shutdown).

        One job per thread: each closes its own connections (Django connections belong to
        their thread) and waits at a barrier, so no thread can take two jobs while another
        takes none.
        """
        barrier = threading.Barrier(self.size)

        def close() -> None:
            connections.close_all()
            _local.__dict__.pop("connections", None)
            barrier.wait(timeout)

        for future in [self.executor.submit(close) for _ in range(self.size)]:
            future.result(timeout)


# Enough for the slowest call (a launch that waits for its desktop) not to stall everyone else,
# few enough to stay far below PostgreSQL's default max_connections of 100.
SHARED = DatabaseThreads("db", 16)
# Three short calls per relay connection (admission, opening, close): as many threads as
# Python's default executor would give them, holding no connection between calls (without
# Django's pool, idle relay threads would otherwise keep one each, per process).
RELAY = DatabaseThreads("relay-db", min(32, (os.cpu_count() or 1) + 4), keep_connections=False)


def _tidy_connections(*, keep: bool = True) -> None:
    """Close this thread's connections that Django would not reuse, with our maximum age (all
    of them unless `keep`); a connection from Django's pool goes back to it after every call (it
    costs nothing to borrow again, and the pool is shared with every request of the process)."""
    known = _local.__dict__.setdefault("connections", {})
    for connection in connections.all(initialized_only=True):
        if connection.connection is None:
            continue
        if not keep or getattr(connection, "pool", None) is not None:
            connection.close()
            known.pop(connection.alias, None)
            continue
        if known.get(connection.alias) is not connection.connection:
            # A new connection: Django set its expiry from CONN_MAX_AGE; the pool's is longer.
            known[connection.alias] = connection.connection
            connection.close_at = time.monotonic() + CONNECTION_MAX_AGE
        connection.close_if_unusable_or_obsolete()


# --- The pool's check of a connection it lends -------------------------------------------------
#
# psycopg_pool, as Django sets it up (CONN_HEALTH_CHECKS), checks every connection it lends with an
# empty query: a round trip and several times the CPU the borrow costs otherwise, on every
# borrow; each relay connection borrows three times. A connection
# that the server closed (a restart, a terminated backend, an idle timeout) has the server's
# goodbye or the kernel's hang-up waiting on its socket, which a poll sees without a round trip;
# one that sat unused for CHECK_AFTER_IDLE may have been dropped silently on the way (a firewall's
# idle timeout, minutes) and is still checked with the query, as is any whose socket has
# something to say. A broken connection is found as before; a busy pool stops paying for it.

CHECK_AFTER_IDLE = 10.0  # seconds since a connection was last lent
_RDHUP = getattr(select, "POLLRDHUP", 0)  # Linux; elsewhere a hang-up still shows as readable
_lent_at: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_lent_lock = threading.Lock()


def _check_unless_fresh(conn) -> None:
    """The pool's check (raises if `conn` is broken): the empty query, unless the connection
    was lent within CHECK_AFTER_IDLE and nothing waits on its socket."""
    now = time.monotonic()
    with _lent_lock:
        lent_at = _lent_at.get(conn)
        _lent_at[conn] = now
    if lent_at is None or now - lent_at >= CHECK_AFTER_IDLE or _socket_has_news(conn):
        ConnectionPool.check_connection(conn)


def _socket_has_news(conn) -> bool:
    """Whether anything (data, a hang-up, an error) waits on the connection's socket: a
    connection at rest in autocommit mode is sent nothing."""
    poller = select.poll()
    try:
        poller.register(conn.fileno(), select.POLLIN | _RDHUP)
        return bool(poller.poll(0))
    except Exception:  # closed, or no socket to look at: let the query decide
        return True


def _pools_check_unless_fresh() -> None:
    """Give Django's connection pools (created lazily, per process) the check above, in place
    of check_connection on every lending; a pool set up otherwise is left as it is."""
    for connection in connections.all():
        pool = getattr(connection, "pool", None)
        if getattr(pool, "_check", None) is ConnectionPool.check_connection:
            pool._check = _check_unless_fresh


class _InPool(SyncToAsync):
    def __init__(self, function, *, threads: DatabaseThreads):
        super().__init__(function, thread_sensitive=False, executor=threads.executor)
        self.keep_connections = threads.keep_connections

    def thread_handler(self, loop, *args, **kwargs):
        _pools_check_unless_fresh()
        _tidy_connections()
        try:
            return super().thread_handler(loop, *args, **kwargs)
        finally:
            _tidy_connections(keep=self.keep_connections)


def in_db_thread(
    function: Callable[P, R], *, threads: DatabaseThreads = SHARED
) -> Callable[P, Awaitable[R]]:
    """`function` as a coroutine function that runs in one of `threads`."""
    return _InPool(function, threads=threads)


def close_connections(timeout: float = 10.0) -> None:
    """Close the connections of every pool's threads."""
    for threads in (SHARED, RELAY):
        threads.close_connections(timeout)
