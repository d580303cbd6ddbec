"""PostgreSQL connections come from a pool per process: the end of a request gives its
connection back instead of closing it, so the next request skips the connect."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.db import connection

pytestmark = [
    pytest.mark.skipif(
        settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql"
        or not settings.WORKGATE_DB_POOL_SIZE,
        reason="the pool is PostgreSQL's, and WORKGATE_DB_POOL_SIZE=0 turns it off",
    ),
    pytest.mark.django_db(transaction=True),
]


def _one(sql: str):
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchone()


def test_a_closed_connection_goes_back_to_the_pool_and_is_used_again():
    _one("SELECT 1")
    connection.pool.wait(timeout=10)  # its two are open
    (started,) = _one("SELECT clock_timestamp()")
    connection.close()
    opened = set()
    for _ in range(10):
        pid, born = _one(
            "SELECT pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()"
        )
        if born >= started:
            opened.add(pid)
        connection.close()  # what the end of every request does (CONN_MAX_AGE is 0)

    pool = settings.DATABASES["default"]["OPTIONS"]["pool"]
    assert pool["max_size"] == settings.WORKGATE_DB_POOL_SIZE
    # Ten connections, all served by the pool's open ones; without it, ten new server processes.
    assert opened == set()
