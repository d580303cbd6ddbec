"""PostgreSQL connections come from a pool per process: the end of a request gives its
connection back instead of closing it, so the next request skips the connect."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.db import connection

pytestmark = [
    pytest.mark.skipif(
        settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql",
        reason="the pool is PostgreSQL's",
    ),
    pytest.mark.django_db(transaction=True),
]


def _server_process() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def test_a_closed_connection_goes_back_to_the_pool_and_is_used_again():
    seen = set()
    for _ in range(10):
        seen.add(_server_process())
        connection.close()  # what the end of every request does (CONN_MAX_AGE is 0)

    pool = settings.DATABASES["default"]["OPTIONS"]["pool"]
    assert pool["max_size"] == settings.WORKGATE_DB_POOL_SIZE == 40
    # The pool's own two, and at most one more if the first request came before they were
    # ready; without the pool, ten connections and ten server processes.
    assert len(seen) <= pool["min_size"] + 1
