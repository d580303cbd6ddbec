"""What one account can make the assistant's history hold: a turn's inputs are bounded as a
whole, stored once as they were sent, kept for the newest turns only, and listed in a bounded
number of bytes."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from audit.models import AuditEntry
from streaming.models import Conversation, History
from tests.streaming.conftest import QANDA_URL, STREAM_URL
from tests.support.database import orm
from tests.support.providers import openai_text_reply

pytestmark = pytest.mark.django_db(transaction=True)

# The largest turn the per-string limits allowed: 50 strings of 32,000 characters.
FLOOD = ["x" * 32000] * 50


def stored_row_bytes(history_id: int) -> int:
    """How many bytes the turn's whole row takes as text in the database."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT octet_length(h::text) FROM streaming_history h WHERE id = %s", [history_id]
        )
        return cursor.fetchone()[0]


@pytest.mark.parametrize("url", [STREAM_URL, QANDA_URL])
async def test_inputs_longer_together_than_the_bound_are_a_400_that_changes_nothing(ask, user, url):
    audited = await orm(AuditEntry.objects.count)

    streamed = await ask(
        user, {"inputs": FLOOD, "requestArgs": {"selectedCourse": {"course_id": "c"}}}, url=url
    )

    assert streamed.status == 400
    assert json.loads(streamed.raw) == {
        "success": False,
        "detail": "inputs: The inputs hold 1,600,000 characters together; at most 32,000 "
        "are accepted.",
        "code": "invalid",
        "errors": {
            "inputs": [
                "The inputs hold 1,600,000 characters together; at most 32,000 are accepted."
            ]
        },
    }
    assert not await orm(History.objects.exists)
    assert not await orm(Conversation.objects.exists)
    assert await orm(AuditEntry.objects.count) == audited


async def test_inputs_at_the_bound_are_sent_to_the_provider_and_stored_once(
    ask, user, make_assistant, openai_server, client_for
):
    assistant = await orm(make_assistant, "openai", model="gpt-test")
    openai_server.script(openai_text_reply("Noted."))
    inputs = ["a" * 16000, "b" * 15999, "c"]

    streamed = await ask(
        user, {"inputs": inputs, "requestArgs": {"assistantId": str(assistant.pk)}}
    )

    assert streamed.status == 200 and streamed.types[-2:] == ["complete", "done"]
    assert openai_server.requests[0]["messages"][-1] == {
        "role": "user",
        "content": "\n\n".join(inputs),
    }
    history = await orm(History.objects.get)
    assert history.inputs == inputs and history.completion == "Noted."
    # Once: the row is the 32,000 characters and little else (it held them twice before).
    assert 32000 < await orm(stored_row_bytes, history.pk) < 34000
    client = await orm(client_for, user)
    listed = (await orm(client.get, "/api/user/histories")).json()["data"]
    assert listed[0]["inputs"] == inputs
    assert listed[0]["outputs"] == ["Noted."] and listed[0]["completion"] == "Noted."


async def test_an_account_keeps_only_its_newest_turns(ask, user, other_user, settings):
    settings.WORKGATE_HISTORY_KEEP_PER_USER = 3
    now = timezone.now()

    def turn(owner, minutes_ago: int) -> History:
        return History.objects.create(
            user=owner,
            inputs=[f"{minutes_ago} minutes ago"],
            status=History.Status.COMPLETE,
            created_at=now - timedelta(minutes=minutes_ago),
        )

    old = [await orm(turn, user, minutes) for minutes in (30, 20, 10)]
    theirs = [await orm(turn, other_user, minutes) for minutes in (40, 30, 20, 10)]

    streamed = await ask(user, {"inputs": ["What is running?"]})

    assert streamed.types[-2:] == ["complete", "done"]
    kept = await orm(lambda: list(History.objects.filter(user=user).order_by("created_at")))
    assert [h.pk for h in kept[:2]] == [old[1].pk, old[2].pk]
    assert kept[2].inputs == ["What is running?"] and len(kept) == 3
    assert await orm(History.objects.filter(user=other_user).count) == len(theirs)


@pytest.fixture
def big_turns(user, other_user):
    """Fifty turns of 32,000 two-byte characters each (64 KB of JSON apiece), newest last."""
    now = timezone.now()
    return [
        History.objects.create(
            user=user,
            inputs=["é" * 32000],
            completion="Noted.",
            status=History.Status.COMPLETE,
            created_at=now - timedelta(minutes=100 - number),
        )
        for number in range(50)
    ]


@pytest.mark.parametrize(
    ("client", "url"), [("api", "/api/user/histories"), ("admin_api", "/api/admin/histories")]
)
def test_a_listing_of_big_turns_stays_within_the_byte_bound(request, big_turns, client, url):
    api = request.getfixturevalue(client)
    pages, query = [], {"limit": 50}

    while not pages or pages[-1]["truncated"]:
        response = api.get(url, query)
        assert response.status_code == 200 and len(response.content) <= 1024 * 1024
        pages.append(response.json())
        query["before"] = pages[-1]["data"][-1]["created_at"]

    # Each page as full as the bound allows: whole turns of 64 KB, sixteen to a page.
    assert [len(page["data"]) for page in pages] == [16, 16, 16, 2]
    listed = [item for page in pages for item in page["data"]]
    assert [item["id"] for item in listed] == [turn.pk for turn in reversed(big_turns)]
    assert all(item["inputs"] == ["é" * 32000] for item in listed)


def test_a_turn_larger_than_the_byte_bound_is_listed_alone(api, big_turns, settings):
    settings.WORKGATE_HISTORY_LIST_MAX_BYTES = 64 * 1024

    body = api.get("/api/user/histories").json()

    assert body["truncated"] is True
    assert [item["id"] for item in body["data"]] == [big_turns[-1].pk]


def test_a_search_finds_quotes_and_accents_in_the_inputs(api, user):
    History.objects.create(
        user=user,
        inputs=['Öffne "das Wiki"', "bitte"],
        status=History.Status.COMPLETE,
        created_at=timezone.now(),
    )

    found = [
        len(api.get("/api/user/histories", {"search": search}).json()["data"])
        for search in ('"das wiki"', "Öffne", "bitte", '", "')
    ]

    assert found == [1, 1, 1, 0]
