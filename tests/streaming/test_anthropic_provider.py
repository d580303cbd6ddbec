"""The anthropic provider against a loopback server speaking the streamed Messages API."""

from __future__ import annotations

import json

import pytest

from streaming.models import History
from tests.support.database import orm
from tests.support.providers import (
    Reply,
    anthropic_end,
    anthropic_event,
    anthropic_start,
    anthropic_text_block,
    anthropic_thinking_block,
    anthropic_tool_block,
)
from tests.support.streams import assert_sse_contract

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def assistant(make_assistant):
    return make_assistant("anthropic", model="claude-test", thinking_budget_tokens=2048)


def body(assistant, *inputs: str, **args) -> dict:
    return {"inputs": list(inputs), "requestArgs": {"assistantId": str(assistant.pk), **args}}


def tool_round() -> Reply:
    return Reply(
        [
            anthropic_start(input_tokens=40, cache_read=10),
            *anthropic_thinking_block(0, ("The user wants ", "their sessions."), "sig-round-0"),
            *anthropic_text_block(1, ("Let me check.",)),
            *anthropic_tool_block(2, "toolu_01", "list_sessions", '{"status": "live"}'),
            *anthropic_end("tool_use", 25),
        ]
    )


def answer_round() -> Reply:
    return Reply(
        [
            anthropic_start(input_tokens=90),
            anthropic_event("ping", {}),
            *anthropic_thinking_block(0, ("Nothing runs.",), "sig-round-1"),
            *anthropic_text_block(1, (" Nothing ", "is running.")),
            *anthropic_end("end_turn", 12),
        ]
    )


async def test_thinking_rounds_close_with_their_signature_and_go_back_with_the_tool_result(
    ask, user, assistant, anthropic_server
):
    anthropic_server.script(tool_round(), answer_round())

    streamed = await ask(user, body(assistant, "What is running?", "Quickly, please."))

    assert_sse_contract(streamed)
    assert streamed.types == [
        "connected",
        *["thinking"] * 3,
        "stream",
        "tool_call",
        "tool_result",
        *["thinking"] * 2,
        "stream",
        "stream",
        "complete",
        "done",
    ]
    closes = [e for e in streamed.of_type("thinking") if e.get("done")]
    assert closes == [
        {
            "type": "thinking",
            "id": "round-0",
            "round": 0,
            "text": "The user wants their sessions.",
            "done": True,
            "signature": "sig-round-0",
        },
        {
            "type": "thinking",
            "id": "round-1",
            "round": 1,
            "text": "Nothing runs.",
            "done": True,
            "signature": "sig-round-1",
        },
    ]
    call = streamed.of_type("tool_call")[0]
    assert (call["call_id"], call["name"], call["arguments"]) == (
        "toolu_01",
        "list_sessions",
        {"status": "live"},
    )
    assert streamed.of_type("tool_result")[0]["response"]["sessions"] == []
    complete = streamed.events[-2]
    assert complete["completion"] == "Let me check. Nothing is running."
    assert complete["model"] == "claude-test"
    # Anthropic counts cache reads apart from input_tokens; the turn's input is both.
    assert complete["usage"] == 177  # a number, as Praxis gives it
    assert complete["usageDetails"] == {
        "input_tokens": 140,
        "output_tokens": 37,
        "total_tokens": 177,
        "cached_input_tokens": 10,
    }

    first, second = anthropic_server.requests
    assert len(set(anthropic_server.peers)) == 1  # the tool round reused the connection
    headers = anthropic_server.headers[0]
    assert headers["x-api-key"] == "sk-test-anthropic"
    assert headers["anthropic-version"] == "2023-06-01"
    assert first["stream"] is True and first["model"] == "claude-test"
    assert first["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert first["max_tokens"] > 2048
    assert first["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is running?"},
                {"type": "text", "text": "Quickly, please."},
            ],
        }
    ]
    assert {tool["name"] for tool in first["tools"]} >= {"launch_workspace", "stop_workspace"}
    assert all("input_schema" in tool for tool in first["tools"])
    assistant_turn, tool_results = second["messages"][1], second["messages"][2]
    assert assistant_turn == {
        "role": "assistant",
        "content": [
            {
                "type": "thinking",
                "thinking": "The user wants their sessions.",
                "signature": "sig-round-0",
            },
            {"type": "text", "text": "Let me check."},
            {
                "type": "tool_use",
                "id": "toolu_01",
                "name": "list_sessions",
                "input": {"status": "live"},
            },
        ],
    }
    assert tool_results["role"] == "user"
    [result] = tool_results["content"]
    assert result["type"] == "tool_result" and result["tool_use_id"] == "toolu_01"
    assert result["is_error"] is False
    assert json.loads(result["content"])["sessions"] == []

    history = await orm(History.objects.get)
    assert history.status == History.Status.COMPLETE
    assert [(t["id"], t["signature"]) for t in history.thinking] == [
        ("round-0", "sig-round-0"),
        ("round-1", "sig-round-1"),
    ]


async def test_thinking_hidden_by_the_institution_still_goes_back_to_the_model(
    ask, user, institution, make_assistant, anthropic_server
):
    institution.display_thinking_details = False
    await orm(institution.save)
    assistant = await orm(
        make_assistant, "anthropic", institution=institution, thinking_budget_tokens=1024
    )
    anthropic_server.script(tool_round(), answer_round())

    streamed = await ask(user, body(assistant, "What is running?"))

    assert streamed.of_type("thinking") == []
    assert streamed.events[-2]["completion"] == "Let me check. Nothing is running."
    second = anthropic_server.requests[1]
    assert second["messages"][1]["content"][0]["signature"] == "sig-round-0"
    history = await orm(History.objects.get)
    assert history.thinking == []


@pytest.mark.parametrize(
    ("reply", "status", "message"),
    [
        (
            Reply(
                status=429,
                body={"type": "error", "error": {"type": "rate_limit_error", "message": "Wait"}},
            ),
            429,
            "The anthropic provider is rate limiting requests (retry after 30 s): Wait",
        ),
        (
            Reply(
                status=500,
                body={"type": "error", "error": {"type": "api_error", "message": "Internal"}},
            ),
            502,
            "The anthropic provider answered 500: Internal",
        ),
        (
            Reply([anthropic_start(), *anthropic_text_block(0, ("Half",))[:2]], drop=True),
            502,
            "The anthropic provider's connection broke off mid-answer.",
        ),
        (
            Reply(
                [
                    anthropic_start(),
                    anthropic_event(
                        "error", {"error": {"type": "overloaded_error", "message": "Overloaded"}}
                    ),
                ]
            ),
            503,
            "The anthropic provider failed: Overloaded",
        ),
        (
            Reply([anthropic_start(), *anthropic_text_block(0, ("Half",))]),
            502,
            "The anthropic provider closed the stream before finishing.",
        ),
    ],
    ids=["429", "500", "mid-stream-disconnect", "overloaded-event", "no-message-stop"],
)
async def test_provider_failures_end_with_an_error_event_and_an_error_history(
    ask, user, assistant, anthropic_server, reply, status, message
):
    anthropic_server.script(reply)

    streamed = await ask(user, body(assistant, "hi"))

    assert_sse_contract(streamed)
    assert streamed.events[-2] == {"type": "error", "error": {"message": message, "status": status}}
    history = await orm(History.objects.get)
    assert history.status == History.Status.ERROR and history.error_message == message
