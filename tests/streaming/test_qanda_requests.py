"""What a Q&A request may ask for: validation before any stream, memberships, institution
display policy, assistants, rate limits, the JSON route and the keep-alive."""

from __future__ import annotations

import json
import threading
import uuid

import pytest

from streaming import delivery, engine, tools
from streaming.events import DisplayInfo
from streaming.models import Assistant, Conversation, History, Institution
from tests.support.database import orm

pytestmark = pytest.mark.django_db(transaction=True)


def assert_refused(streamed, status: int, code: str) -> dict:
    assert streamed.status == status
    assert streamed.headers["Content-Type"] == "application/json"
    body = json.loads(streamed.raw)
    assert body["success"] is False and body["code"] == code
    return body


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "inputs"),
        ({"inputs": []}, "inputs"),
        ({"inputs": "what is running?"}, "inputs"),
        ({"inputs": [42]}, "inputs"),
        ({"inputs": ["hi"], "requestArgs": {"institutionPublicId": "not-a-uuid"}}, "requestArgs"),
        ({"inputs": ["hi"], "requestArgs": {"userTimezone": "Mars/Olympus_Mons"}}, "requestArgs"),
        ({"inputs": ["hi"], "requestArgs": {"userTimezone": "../etc/passwd"}}, "requestArgs"),
        ({"inputs": ["hi"], "requestArgs": {"assistantId": str(uuid.uuid4())}}, "requestArgs"),
        (
            {"inputs": ["hi"], "requestArgs": {"selectedCourse": {"course_name": "x"}}},
            "requestArgs",
        ),
    ],
)
async def test_bad_input_is_a_400_before_any_stream_opens(ask, user, body, field):
    streamed = await ask(user, body)

    refusal = assert_refused(streamed, 400, "invalid")
    assert field in refusal["errors"]
    assert not await orm(History.objects.exists)


async def test_a_body_that_is_not_json_is_a_400(ask, user):
    assert_refused(await ask(user, "{inputs"), 400, "parse_error")


async def test_an_anonymous_request_is_a_401(transactional_db):
    from django.test import AsyncClient

    response = await AsyncClient().post(
        "/api/ai/personal-stream/qanda-stream",
        json.dumps({"inputs": ["hi"]}),
        content_type="application/json",
    )

    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


async def test_an_institution_the_caller_does_not_belong_to_is_a_403(ask, user, other_user):
    theirs = await orm(Institution.objects.create, name="Elsewhere")
    for public_id in (theirs.public_id, uuid.uuid4()):
        streamed = await ask(
            user, {"inputs": ["hi"], "requestArgs": {"institutionPublicId": str(public_id)}}
        )
        assert_refused(streamed, 403, "not_a_member")


async def test_an_institution_that_hides_thinking_gets_none_streamed_or_stored(
    ask, user, institution
):
    institution.display_thinking_details = False
    await orm(institution.save)
    body = {"inputs": ["what is running?"]}
    args = {"requestArgs": {"institutionPublicId": str(institution.public_id)}}

    hidden = await ask(user, {**body, **args})
    personal = await ask(user, body)

    assert hidden.types[-2] == "complete"
    assert hidden.of_type("thinking") == []
    assert personal.of_type("thinking")  # personal use always shows thinking
    histories = await orm(lambda: list(History.objects.order_by("created_at")))
    assert histories[0].institution_id == institution.pk and histories[0].thinking == []
    assert histories[1].institution_id is None and histories[1].thinking


async def test_an_institution_that_hides_tool_execution_still_runs_and_records_tools(
    ask, user, institution
):
    institution.display_tool_execution = False
    await orm(institution.save)

    streamed = await ask(
        user,
        {
            "inputs": ["what is running?"],
            "requestArgs": {"institutionPublicId": str(institution.public_id)},
        },
    )

    assert streamed.of_type("tool_call") == [] and streamed.of_type("tool_result") == []
    assert streamed.events[-2]["completion"].startswith("Nothing is running")
    history = await orm(History.objects.get)
    assert [call["name"] for call in history.tool_calls] == ["list_sessions"]


async def test_assistants_are_usable_only_by_those_they_are_shared_with(
    ask, user, other_user, institution, make_assistant
):
    shared = await orm(make_assistant, "builtin", institution=institution)
    draft = await orm(make_assistant, "builtin", status="unpublished", owner=other_user)
    retired = await orm(make_assistant, "builtin", status="inactive")

    used = await ask(user, {"inputs": ["hi"], "requestArgs": {"assistantId": str(shared.pk)}})
    for assistant in (draft, retired):
        refused = await ask(
            user, {"inputs": ["hi"], "requestArgs": {"assistantId": str(assistant.pk)}}
        )
        assert_refused(refused, 400, "invalid")
    outsider = await ask(
        other_user, {"inputs": ["hi"], "requestArgs": {"assistantId": str(shared.pk)}}
    )
    assert_refused(outsider, 400, "invalid")

    assert used.types[-2] == "complete"
    history = await orm(History.objects.get)
    # The assistant's institution is the turn's, so its display policy applies.
    assert history.assistant_id == shared.pk and history.institution_id == institution.pk


async def test_a_selected_course_becomes_a_conversation_listed_under_courses(
    ask, user, client_for, make_assistant
):
    assistant = await orm(make_assistant, "builtin", name="Desk helper")
    course = {"course_id": 101, "course_name": "Onboarding"}
    args = {"selectedCourse": course, "assistantId": str(assistant.pk)}
    await ask(user, {"inputs": ["what is running?"], "requestArgs": args})
    # The course remembers its assistant when the next turn names none.
    await ask(user, {"inputs": ["list workspaces"], "requestArgs": {"selectedCourse": course}})
    await ask(user, {"inputs": ["hi"]})

    conversation = await orm(Conversation.objects.get)
    assert (conversation.course_id, conversation.course_name) == ("101", "Onboarding")
    turns = await orm(lambda: list(History.objects.order_by("created_at")))
    assert [t.conversation_id for t in turns] == [conversation.pk, conversation.pk, None]
    assert [t.assistant_id for t in turns] == [assistant.pk, assistant.pk, None]

    courses = (await orm(client_for(user).get, "/api/user/courses")).json()
    assert courses == {
        "success": True,
        "data": [
            {
                "course_id": "101",
                "course_name": "Onboarding",
                "history_count": 2,
                "last_dialogue_date": courses["data"][0]["last_dialogue_date"],
                "assistant": {"id": str(assistant.pk), "name": "Desk helper"},
            }
        ],
    }
    assert courses["data"][0]["last_dialogue_date"].startswith(str(turns[1].created_at.year))


async def test_the_rate_limit_answers_429_with_retry_after_on_both_routes(
    ask, ask_json, user, settings
):
    settings.WORKGATE_QANDA_RATE = "2/m"

    first = await ask(user, {"inputs": ["hi"]})
    second = await ask_json(user, {"inputs": ["hi"]})
    third = await ask(user, {"inputs": ["hi"]})
    fourth = await ask_json(user, {"inputs": ["hi"]})

    assert first.status == 200 and second.status_code == 200
    body = assert_refused(third, 429, "rate_limited")
    assert int(third.headers["Retry-After"]) > 0 and body["detail"]
    assert fourth.status_code == 429
    assert await orm(History.objects.count) == 2


async def test_rag_only_returns_the_search_results_without_a_model(ask, user, team_wiki):
    streamed = await ask(user, {"inputs": ["wiki"], "requestArgs": {"ragOnly": True}})

    assert streamed.types == [
        "connected",
        "tool_call",
        "tool_result",
        "stream",
        "complete",
        "done",
    ]
    assert streamed.of_type("tool_call")[0]["name"] == "search_workspaces"
    assert streamed.events[-2]["model"] == "none"
    assert streamed.events[-2]["completion"] == "- Team Wiki (web, ws-team-wiki): The team's wiki"


async def test_a_long_tool_call_keeps_the_connection_alive(ask, user, monkeypatch):
    """With the interval shortened and a tool that waits, keep-alive comments cross the wire
    while it runs (the real interval is 15 s)."""
    release = threading.Event()
    calls = []

    def slow(ctx, arguments):
        calls.append(ctx.user.pk)
        release.wait(10)
        return {"sessions": [], "count": 0, "status": "live"}, ""

    slow_tool = tools.Tool(
        tools.TOOLS["list_sessions"].spec, slow, lambda a: DisplayInfo("activity", "Checking")
    )
    monkeypatch.setitem(tools.TOOLS, "list_sessions", slow_tool)
    monkeypatch.setattr(engine, "KEEPALIVE_SECONDS", 0.02)
    timer = threading.Timer(0.3, release.set)
    timer.start()
    try:
        streamed = await ask(user, {"inputs": ["what is running?"]})
    finally:
        timer.cancel()
        release.set()

    assert calls == [user.pk]
    assert streamed.comments and set(streamed.comments) == {": keep-alive"}
    raw = streamed.raw.decode()
    assert raw.index('"type":"tool_call"') < raw.index(": keep-alive") < raw.index("tool_result")


async def test_the_json_route_answers_the_whole_turn(ask_json, user):
    response = await ask_json(user, {"inputs": ["what is running?"]})

    assert response.status_code == 200
    body = response.json()
    history = await orm(History.objects.get)
    assert body == {
        "success": True,
        "streamingFailed": False,
        "outputs": [history.completion],
        "usage": history.usage["total_tokens"],  # a number, as Praxis gives it
        "usageDetails": history.usage,
        "model": "builtin",
        "query_duration_ms": body["query_duration_ms"],
        "historyId": history.pk,
    }
    assert history.completion.startswith("Nothing is running")
    # Words counted as tokens: the question (twice, a round each) and the tool call at least.
    assert body["usage"] == history.usage["input_tokens"] + history.usage["output_tokens"]
    assert history.usage["input_tokens"] >= 2 * 3  # "what is running?", read in each round
    assert history.usage["output_tokens"] > len(history.completion.split())


async def test_the_json_route_says_streaming_failed_for_an_unknown_socket(ask_json, user):
    response = await ask_json(
        user, {"inputs": ["what is running?"], "requestArgs": {"socketId": "nope"}}
    )

    assert response.status_code == 200
    assert response.json()["streamingFailed"] is True
    assert response.json()["outputs"]


async def test_without_a_socket_transport_a_turn_asked_to_stream_still_answers(
    ask_json, user, monkeypatch
):
    # The Socket.IO app installs the transport from its AppConfig.ready(); the assistant does
    # not depend on it.
    monkeypatch.setattr(delivery, "_opener", None)

    response = await ask_json(
        user, {"inputs": ["what is running?"], "requestArgs": {"socketId": "a-socket"}}
    )

    assert response.status_code == 200
    assert response.json()["streamingFailed"] is True
    assert response.json()["outputs"]


async def test_an_inactive_assistant_named_by_the_course_is_not_used(ask, user, make_assistant):
    assistant = await orm(make_assistant, "builtin")
    course = {"course_id": "c1", "course_name": "One"}
    await ask(
        user,
        {
            "inputs": ["hi"],
            "requestArgs": {"selectedCourse": course, "assistantId": str(assistant.pk)},
        },
    )
    await orm(Assistant.objects.filter(pk=assistant.pk).update, status="inactive")

    streamed = await ask(user, {"inputs": ["hi"], "requestArgs": {"selectedCourse": course}})

    assert streamed.types[-2] == "complete"
    latest = await orm(History.objects.order_by("-created_at").first)
    assert latest.assistant_id is None


async def test_a_client_that_accepts_only_event_streams_gets_the_stream(ask, user):
    """EventSource-style clients send `Accept: text/event-stream`; that is not a 406."""
    streamed = await ask(
        user, {"inputs": ["what is running?"]}, headers={"Accept": "text/event-stream"}
    )

    assert streamed.status == 200
    assert streamed.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert streamed.types[0] == "connected" and streamed.types[-1] == "done"


async def test_such_a_client_still_gets_refusals_in_the_json_error_shape(ask, user):
    streamed = await ask(user, {"inputs": []}, headers={"Accept": "text/event-stream"})

    assert_refused(streamed, 400, "invalid")


async def test_assistant_id_null_answers_with_the_default_and_the_course_forgets_its_assistant(
    ask, user, make_assistant
):
    assistant = await orm(make_assistant, "builtin", name="Desk helper")
    course = {"course_id": "c7", "course_name": "Desk"}
    await ask(
        user,
        {
            "inputs": ["hi"],
            "requestArgs": {"selectedCourse": course, "assistantId": str(assistant.pk)},
        },
    )

    back_to_default = {"selectedCourse": course, "assistantId": None}
    answered = await ask(user, {"inputs": ["and now?"], "requestArgs": back_to_default})
    await ask(user, {"inputs": ["still?"], "requestArgs": {"selectedCourse": course}})

    assert answered.types[-2] == "complete"
    turns = await orm(lambda: list(History.objects.order_by("created_at")))
    assert [t.assistant_id for t in turns] == [assistant.pk, None, None]
    assert (await orm(Conversation.objects.get)).assistant_id is None
