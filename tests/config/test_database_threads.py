"""core.database: the one way async code reaches the ORM."""

from __future__ import annotations

import psycopg
import pytest
from django.db import connection

from accounts.models import User
from core.database import RELAY, DatabaseThreads, in_db_thread
from tests.support.processes import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def _holds_a_connection() -> bool:
    return connection.connection is not None


@pytest.mark.skipif(
    "connection.vendor == 'sqlite'", reason="Django never closes an in-memory SQLite database"
)
async def test_threads_that_keep_no_connection_hold_none_between_calls():
    """The relay's threads (and any pool made so) give their connection up after each call,
    with or without Django's connection pool: idle, they hold none."""
    threads = DatabaseThreads("test-db", 1, keep_connections=False)

    assert await in_db_thread(User.objects.count, threads=threads)() == 0
    assert await in_db_thread(_holds_a_connection, threads=threads)() is False
    assert RELAY.keep_connections is False


def _backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def _terminate(pids) -> None:
    """End these backends from a connection of its own, as a restart would, and wait until the
    server has closed them."""
    # Autocommit: each poll its own transaction, since a transaction reads pg_stat_activity from
    # one snapshot (a backend still there at the first poll would be there at every poll).
    with psycopg.connect(**connection.get_connection_params(), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", [pids])
        gone = "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = ANY(%s::int[]))"
        wait_for(lambda: admin.execute(gone, [pids]).fetchone()[0])


@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="Django's pool is PostgreSQL's")
def test_the_pool_asks_no_query_of_a_connection_just_lent_and_catches_one_the_server_closed(
    monkeypatch,
):
    """The check the pool runs on each connection it lends: the empty query for one it lends
    the first time or after CHECK_AFTER_IDLE; none for one lent a moment ago whose socket is
    quiet; and the query again (which finds it broken) once the server closed it, whose
    goodbye waits on the socket."""
    from psycopg_pool import ConnectionPool

    from core import database
    from core.database import _check_unless_fresh

    checked = []
    real_check = ConnectionPool.check_connection

    def counted(conn) -> None:
        checked.append(conn)
        real_check(conn)

    monkeypatch.setattr(ConnectionPool, "check_connection", staticmethod(counted))
    with psycopg.connect(**connection.get_connection_params(), autocommit=True) as lent:
        _check_unless_fresh(lent)  # lent the first time: checked
        _check_unless_fresh(lent)  # again a moment later: not
        assert len(checked) == 1
        with monkeypatch.context() as idle:
            idle.setattr(database, "CHECK_AFTER_IDLE", 0.0)  # as if it had waited that long
            _check_unless_fresh(lent)
        assert len(checked) == 2

        _terminate([lent.info.backend_pid])
        with pytest.raises(psycopg.OperationalError):
            _check_unless_fresh(lent)  # a moment later, but the server said goodbye
        assert len(checked) == 3


@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="Django's pool is PostgreSQL's")
async def test_no_call_is_lent_a_pooled_connection_the_server_closed():
    """Django's pool gets that check (core.database installs it): a pooled connection the
    server closed (a restart, a terminated backend) is replaced, and no call sees it."""
    from core import database

    threads = DatabaseThreads("test-db", 1, keep_connections=False)
    pid = await in_db_thread(_backend_pid, threads=threads)()
    assert connection.pool._check is database._check_unless_fresh

    await in_db_thread(_terminate, threads=threads)([pid])
    # The pool lends its connections in turn: through all of them, the closed one included.
    size = connection.pool.get_stats()["pool_size"]
    pids = [await in_db_thread(_backend_pid, threads=threads)() for _ in range(size + 1)]
    assert pid not in pids
