"""Waiting for server processes that share the test database to finish their work."""

from __future__ import annotations

import asyncio
import time

from django.db import connection

from core.database import in_db_thread

_BUSY_OTHERS = """
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
  AND state IN ('active', 'idle in transaction', 'idle in transaction (aborted)')
"""


def wait_until_other_connections_are_idle(timeout: float = 15.0) -> None:
    """Wait until no other connection to this database is inside a statement or transaction.

    A Daphne process started by a test may still be writing (a relay's disconnect audit, a
    session's last_seen_at) when the test ends; flushing the tables meanwhile can deadlock with
    it. This waits on a condition, never for a fixed time.
    """
    if connection.vendor != "postgresql":
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute(_BUSY_OTHERS)
            if cursor.fetchone()[0] == 0:
                return
        time.sleep(0.05)


async def orm_until(predicate, *, timeout: float = 10.0):
    """Poll `predicate` in the database threads until it returns something truthy (what a
    server in another process writes once it gets there)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await orm(predicate)
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def orm(function, *args, **kwargs):
    """Run ORM code from an async test the way the assistant does: in its database threads,
    which close their connections (the test database can then be dropped)."""
    return await in_db_thread(function)(*args, **kwargs)
