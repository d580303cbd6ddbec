"""core.database: the one way async code reaches the ORM."""

from __future__ import annotations

import pytest
from django.db import connection

from accounts.models import User
from core.database import RELAY, DatabaseThreads, in_db_thread

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
