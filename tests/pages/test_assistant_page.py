from __future__ import annotations

import pytest
from django.utils import timezone

from streaming.models import Conversation, History

pytestmark = pytest.mark.django_db


def make_turn(user, conversation, **fields) -> History:
    defaults = {
        "inputs": ["Which desktops are up?"],
        "completion": "Nothing is running.",
        "status": "complete",
        "model": "builtin",
        "created_at": timezone.now(),
    }
    return History.objects.create(user=user, conversation=conversation, **{**defaults, **fields})


def test_the_assistant_page_lists_conversations_and_shows_past_turns(browser_for, user):
    chat = Conversation.objects.create(user=user, course_id="c-1", course_name="Desktops")
    make_turn(
        user,
        chat,
        thinking=[{"id": "round-0", "round": 0, "text": "Look at the sessions."}],
        tool_calls=[
            {
                "call_id": "call-1",
                "name": "list_sessions",
                "arguments": {},
                "response": {"sessions": []},
                "success": True,
                "duration_ms": 12,
            }
        ],
    )
    make_turn(user, chat, inputs=["Open the wiki"], completion="Stopped early", status="cancelled")
    client = browser_for(user)

    start = client.get("/assistant").content.decode()
    assert "Desktops" in start and "Which desktops are up?" not in start

    html = client.get("/assistant", {"course": "c-1"}).content.decode()
    assert html.index("Which desktops are up?") < html.index("Open the wiki")
    assert "Reasoning, round 1" in html and "Look at the sessions." in html
    assert "list_sessions" in html and "12 ms" in html
    assert "Stopped" in html
    assert "workgate/assistant.js" in html


def test_nobody_sees_another_persons_conversation(browser_for, user, other_user):
    chat = Conversation.objects.create(user=user, course_id="c-1", course_name="Private")
    make_turn(user, chat, inputs=["my secret question"])
    html = browser_for(other_user).get("/assistant", {"course": "c-1"}).content.decode()
    assert "Private" not in html and "my secret question" not in html


def test_the_picker_lists_usable_assistants_and_preselects_the_conversations(
    browser_for, user, other_user
):
    from streaming.models import Assistant

    helper = Assistant.objects.create(name="Desk helper", provider="builtin")
    Assistant.objects.create(
        name="Someone's draft", provider="builtin", status="unpublished", owner=other_user
    )
    Conversation.objects.create(user=user, course_id="c1", course_name="Desk", assistant=helper)
    client = browser_for(user)

    fresh = client.get("/assistant").content.decode()
    in_conversation = client.get("/assistant?course=c1").content.decode()

    assert '<option value="">Workgate (default)</option>' in fresh
    assert f'<option value="{helper.pk}">Desk helper</option>' in fresh
    assert "Someone&#x27;s draft" not in fresh and "Someone's draft" not in fresh
    assert f'<option value="{helper.pk}" selected>Desk helper</option>' in in_conversation


def test_without_assistants_there_is_no_picker(browser_for, user):
    assert b"data-assistant" not in browser_for(user).get("/assistant").content


def test_a_conversation_asked_for_with_a_nul_is_none_not_an_error(browser_for, user):
    client = browser_for(user)
    client.raise_request_exception = False

    page = client.get("/assistant", {"course": "a\x00b"})

    assert page.status_code == 200
    assert page.context["current"] is None
