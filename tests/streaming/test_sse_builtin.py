"""The SSE route with the builtin assistant: the event contract, tools, and history."""

from __future__ import annotations

import pytest

from audit.models import AuditEntry
from sessions_app.models import WorkspaceSession
from streaming.models import History
from tests.streaming.conftest import orm

pytestmark = pytest.mark.django_db(transaction=True)


def assert_contract(streamed) -> None:
    """The guide's invariants: connected first, done last, complete or error right before it."""
    assert streamed.status == 200
    assert streamed.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert streamed.headers["Cache-Control"] == "no-cache"
    assert streamed.headers["X-Accel-Buffering"] == "no"
    assert streamed.events[0] == {"type": "connected", "message": "Stream connected"}
    assert streamed.events[-1] == {"type": "done"}
    assert streamed.types[-2] in ("complete", "error")
    assert streamed.types.count("done") == 1
    assert streamed.types.count("complete") + streamed.types.count("error") == 1

    text = ""
    for event in streamed.of_type("stream"):
        text += event["delta"]
        assert event["prompt"] == text  # cumulative prompt is the deltas joined

    calls = {e["call_id"]: e for e in streamed.of_type("tool_call")}
    results = {e["call_id"]: e for e in streamed.of_type("tool_result")}
    assert calls.keys() == results.keys()
    for call_id, result in results.items():
        assert streamed.events.index(calls[call_id]) < streamed.events.index(result)
        assert result["name"] == calls[call_id]["name"]
        assert set(result) == {
            "type", "call_id", "name", "response", "success", "responseDurationMs"
        }  # fmt: skip
        assert set(calls[call_id]["displayInfo"]) == {"icon", "label"}

    rounds: dict[str, str] = {}
    closed: set[str] = set()
    for event in streamed.of_type("thinking"):
        assert event["id"] == f"round-{event['round']}"
        assert event["id"] not in closed
        if event.get("done"):
            assert event["text"] == rounds.get(event["id"], "")
            closed.add(event["id"])
        else:
            rounds[event["id"]] = rounds.get(event["id"], "") + event["delta"]
    assert closed == set(rounds)


async def test_what_is_running_streams_the_plan_the_tool_call_and_the_answer(ask, user):
    streamed = await ask(user, {"inputs": ["What is running?"]})

    assert_contract(streamed)
    assert streamed.types[:2] == ["connected", "thinking"]
    thinking_done = [e for e in streamed.of_type("thinking") if e.get("done")]
    assert [e["id"] for e in thinking_done] == ["round-0"]
    assert "list_sessions" in thinking_done[0]["text"]
    assert "signature" not in thinking_done[0]
    [call] = streamed.of_type("tool_call")
    assert call["name"] == "list_sessions"
    assert call["arguments"] == {"status": "live"}
    [result] = streamed.of_type("tool_result")
    assert result["success"] is True
    assert result["response"]["sessions"] == []
    complete = streamed.events[-2]
    answer = streamed.of_type("stream")[-1]["prompt"]
    assert answer.startswith("Nothing is running right now.")
    assert len(streamed.of_type("stream")) > 5  # small deltas, not one block
    assert complete == {
        "type": "complete",
        "success": True,
        "usage": {
            "input_tokens": 0,
            "output_tokens": 0,
            "total_tokens": 0,
            "cached_input_tokens": 0,
        },
        "outputs": [answer],
        "model": "builtin",
        "cached": False,
        "completion": answer,
    }

    history = await orm(History.objects.get, user=user)
    assert history.status == History.Status.COMPLETE
    assert history.inputs == ["What is running?"]
    assert history.completion == answer and history.outputs == [answer]
    assert history.model == "builtin" and history.provider == "builtin"
    assert history.thinking == [{"id": "round-0", "round": 0, "text": thinking_done[0]["text"]}]
    assert [(c["name"], c["success"], c["round"]) for c in history.tool_calls] == [
        ("list_sessions", True, 0)
    ]
    entry = await orm(AuditEntry.objects.get, action="assistant_tool")
    assert entry.actor_id == user.pk and entry.success
    assert entry.details == {"tool": "list_sessions", "arguments": {"status": "live"}}


async def test_open_the_team_wiki_launches_it_through_the_session_service(ask, user, team_wiki):
    streamed = await ask(user, {"inputs": ["Please open the Team Wiki"]})

    assert_contract(streamed)
    assert [e["name"] for e in streamed.of_type("tool_call")] == [
        "search_workspaces",
        "launch_workspace",
    ]
    launch = streamed.of_type("tool_result")[1]
    assert launch["success"] is True
    session = await orm(WorkspaceSession.objects.get, user=user, workspace_id="ws-team-wiki")
    assert session.status == WorkspaceSession.Status.READY
    assert launch["response"]["session_id"] == str(session.id)
    assert launch["response"]["stream_url"] == f"/viewer/{session.id}"
    answer = streamed.events[-2]["completion"]
    assert answer == f"I launched Team Wiki (ready). Open it at /viewer/{session.id}"
    entries = await orm(lambda: list(AuditEntry.objects.order_by("id")))
    actions = [(e.action, e.details.get("tool"), e.success) for e in entries]
    assert actions == [
        ("assistant_tool", "search_workspaces", True),
        ("launch_workspace", None, True),
        ("assistant_tool", "launch_workspace", True),
    ]

    again = await ask(user, {"inputs": ["open team wiki"]})
    assert again.events[-2]["completion"] == (
        f"Team Wiki is already running for you. Open it at /viewer/{session.id}"
    )
