"""Fixtures for the assistant: signed-in async clients, SSE parsing, fake providers, a workspace
that launches without a desktop.

The assistant reaches the database from its own threads, so these tests run with committed
transactions (`transactional_db`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from django.test import AsyncClient

from accounts.tokens import issue_tokens
from streaming.models import Assistant, Institution, Membership
from tests.support.database import orm
from tests.support.providers import FakeProvider
from workspaces.models import Workspace

STREAM_URL = "/api/ai/personal-stream/qanda-stream"
QANDA_URL = "/api/ai/personal/qanda"


@dataclass
class Streamed:
    status: int
    headers: dict
    raw: bytes
    events: list[dict]
    comments: list[str]

    def of_type(self, kind: str) -> list[dict]:
        return [event for event in self.events if event["type"] == kind]

    @property
    def types(self) -> list[str]:
        return [event["type"] for event in self.events]


def parse_sse(raw: bytes) -> tuple[list[dict], list[str]]:
    """Every `data:` event as JSON and every comment line; anything else fails the test."""
    events, comments = [], []
    text = raw.decode("utf-8")
    assert text.endswith("\n\n") or not text
    for block in text.split("\n\n")[:-1]:
        if block.startswith(":"):
            comments.append(block)
            continue
        assert block.startswith("data: ") and "\n" not in block, block
        events.append(json.loads(block[len("data: ") :]))
    return events, comments


def auth_headers(user, *, mfa: bool = False) -> dict:
    return {"x-access-token": issue_tokens(user, mfa=mfa)["token"]}


@pytest.fixture
def ask(transactional_db):
    """POST a turn to the SSE route in-process and read the whole stream."""

    async def post(
        user,
        body: dict | str,
        *,
        mfa: bool = False,
        url: str = STREAM_URL,
        headers=None,
        cookie: bool = False,
    ):
        """`cookie`: signed in with a browser session, as the assistant page asks, not a token."""
        client = AsyncClient()
        if cookie:
            await orm(client.force_login, user)
        payload = body if isinstance(body, str) else json.dumps(body)
        response = await client.post(
            url,
            payload,
            content_type="application/json",
            headers={**({} if cookie else auth_headers(user, mfa=mfa)), **(headers or {})},
        )
        if not response.streaming:
            return Streamed(response.status_code, dict(response.headers), response.content, [], [])
        raw = b"".join([chunk async for chunk in response.streaming_content])
        events, comments = parse_sse(raw)
        return Streamed(response.status_code, dict(response.headers), raw, events, comments)

    return post


@pytest.fixture
def ask_json(transactional_db):
    async def post(user, body: dict):
        client = AsyncClient()
        return await client.post(
            QANDA_URL, json.dumps(body), content_type="application/json", headers=auth_headers(user)
        )

    return post


@pytest.fixture
def team_wiki(transactional_db):
    """A web workspace with no desktop and no tunnel requirement: it launches anywhere."""
    return Workspace.objects.create(
        id="ws-team-wiki",
        name="Team Wiki",
        type=Workspace.Type.WEB,
        description="The team's wiki",
        connection_type=Workspace.ConnectionType.WEB,
        requires_netbird=False,
        url="http://wiki.internal/",
    )


@pytest.fixture
def institution(transactional_db, user):
    institution = Institution.objects.create(name="Workgate University")
    Membership.objects.create(user=user, institution=institution)
    return institution


@pytest.fixture
def make_assistant(transactional_db):
    def make(provider: str, **fields) -> Assistant:
        fields.setdefault("name", f"{provider} assistant")
        return Assistant.objects.create(provider=provider, **fields)

    return make


@pytest.fixture(scope="session")
def _openai_server():
    server = FakeProvider().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def _anthropic_server():
    server = FakeProvider().start()
    yield server
    server.stop()


@pytest.fixture
def openai_server(_openai_server, settings):
    _openai_server.reset()
    settings.OPENAI_BASE_URL = _openai_server.base_url + "/v1"
    settings.OPENAI_API_KEY = "sk-test-openai"
    yield _openai_server
    _openai_server.reset()


@pytest.fixture
def anthropic_server(_anthropic_server, settings):
    _anthropic_server.reset()
    settings.ANTHROPIC_BASE_URL = _anthropic_server.base_url
    settings.ANTHROPIC_API_KEY = "sk-test-anthropic"
    yield _anthropic_server
    _anthropic_server.reset()
