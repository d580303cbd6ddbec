"""Real Daphne processes sharing the test database and Redis, for the Socket.IO tests.

The suite's database is pytest-django's test database, so the servers are pointed at it and the
tests that create users are `transaction=True`: their rows are committed, visible to Daphne.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import httpx
import pytest
from channels.layers import channel_layers
from django.conf import settings

from core.database import close_connections
from tests.socketio_server.support import GatedOpenAI, Polling, Server
from tests.support import processes
from tests.support.signin import token_for

# Short enough that the heartbeat tests finish in about a second, long enough for loopback.
FAST_PING_INTERVAL_MS = 400
FAST_PING_TIMEOUT_MS = 300


@contextlib.contextmanager
def daphne(log_path, **environment) -> Iterator[Server]:
    with processes.daphne(log_path, **{"REDIS_URL": settings.REDIS_URL, **environment}) as port:
        yield Server(port)


@pytest.fixture(scope="session")
def _openai() -> Iterator[GatedOpenAI]:
    provider = GatedOpenAI().start()
    yield provider
    provider.stop()


@pytest.fixture
def openai(_openai) -> Iterator[GatedOpenAI]:
    """The provider of the `openai` assistants the servers know (the default is `builtin`)."""
    _openai.reset()
    yield _openai
    _openai.gate.set()  # let a reply still waiting finish
    _openai.reset()


@pytest.fixture(scope="session")
def servers(django_db_setup, tmp_path_factory, _openai) -> Iterator[tuple[Server, Server]]:
    """Two server processes behind no sticky load balancer: tests pick one per request."""
    logs = tmp_path_factory.mktemp("daphne")
    provider = {"OPENAI_BASE_URL": _openai.base_url, "OPENAI_API_KEY": "sk-test"}
    with daphne(logs / "a.log", **provider) as first, daphne(logs / "b.log", **provider) as second:
        yield first, second


@pytest.fixture(scope="session")
def server(servers) -> Server:
    return servers[0]


@pytest.fixture(scope="session")
def fast_server(django_db_setup, tmp_path_factory) -> Iterator[Server]:
    """A server whose heartbeat is short enough to watch a silent client being dropped."""
    with daphne(
        tmp_path_factory.mktemp("daphne") / "fast.log",
        WORKGATE_SOCKETIO_PING_INTERVAL_MS=str(FAST_PING_INTERVAL_MS),
        WORKGATE_SOCKETIO_PING_TIMEOUT_MS=str(FAST_PING_TIMEOUT_MS),
    ) as started:
        yield started


# An account's socket cap low enough to reach in a test, on servers whose heartbeat lets a silent
# socket's deadline pass in about two seconds (and leaves loopback clients time to answer).
CAPPED_SOCKETS = 3
CAPPED_PING_INTERVAL_MS = 400
CAPPED_PING_TIMEOUT_MS = 1500


@pytest.fixture(scope="session")
def capped_servers(django_db_setup, tmp_path_factory) -> Iterator[tuple[Server, Server]]:
    """Two processes that let one account hold CAPPED_SOCKETS sockets between them."""
    logs = tmp_path_factory.mktemp("daphne")
    capped = {
        "WORKGATE_SOCKETIO_MAX_SOCKETS_PER_USER": str(CAPPED_SOCKETS),
        "WORKGATE_SOCKETIO_PING_INTERVAL_MS": str(CAPPED_PING_INTERVAL_MS),
        "WORKGATE_SOCKETIO_PING_TIMEOUT_MS": str(CAPPED_PING_TIMEOUT_MS),
    }
    with (
        daphne(logs / "capped-a.log", **capped) as first,
        daphne(logs / "capped-b.log", **capped) as second,
    ):
        yield first, second


@pytest.fixture(scope="session", autouse=True)
def _database_threads_closed(django_db_setup):
    """Tests read the database as the assistant does, in its threads, which keep their
    connections: close them before the test database is dropped."""
    yield
    close_connections()


@pytest.fixture(autouse=True)
def _fresh_channel_layer():
    """A channel layer per test: channels_redis keeps locks and cleanup tasks bound to the event
    loop that made them, and every test here runs in a loop of its own."""
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


@pytest.fixture
def token(user) -> str:
    return token_for(user)


@pytest.fixture
def other_token(other_user) -> str:
    return token_for(other_user)


@pytest.fixture
async def http():
    async with httpx.AsyncClient(timeout=15) as client:
        yield client


@pytest.fixture
def polling(http) -> Polling:
    return Polling(http)
