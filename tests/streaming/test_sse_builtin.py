"""The SSE route with the builtin assistant: the event contract, tools, and history."""

from __future__ import annotations

import json

import pytest

from accounts.models import User
from accounts.services import user_sign_out_everywhere
from audit.models import AuditEntry
from core.network import Origin
from sessions_app.models import WorkspaceSession
from streaming import tools
from streaming.models import History
from streaming.providers.builtin import INTENT_TEXT_LIMIT
from tests.support.database import orm
from tests.support.streams import assert_sse_contract

pytestmark = pytest.mark.django_db(transaction=True)


def words(tool_result: dict) -> int:
    return len(json.dumps(tool_result["response"]).split())


async def test_what_is_running_streams_the_plan_the_tool_call_and_the_answer(ask, user):
    streamed = await ask(user, {"inputs": ["What is running?"]})

    assert_sse_contract(streamed)
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
    # The builtin counts words as tokens: it read the question twice (once per round) and the
    # tool's result once; it wrote its plan, the tool call and the answer.
    question, plan = 3, len(thinking_done[0]["text"].split())
    tool_call, tool_result = 3, words(result)  # list_sessions {"status": "live"}
    read, written = 2 * question + tool_result, plan + tool_call + len(answer.split())
    assert complete == {
        "type": "complete",
        "success": True,
        "usage": read + written,
        "usageDetails": {
            "input_tokens": read,
            "output_tokens": written,
            "total_tokens": read + written,
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

    assert_sse_contract(streamed)
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


async def test_stop_ends_the_callers_own_session(ask, user, team_wiki):
    await ask(user, {"inputs": ["open the team wiki"]})

    streamed = await ask(user, {"inputs": ["stop the team wiki"]})

    assert_sse_contract(streamed)
    assert [e["name"] for e in streamed.of_type("tool_call")] == [
        "list_sessions",
        "stop_workspace",
    ]
    assert streamed.events[-2]["completion"] == "I stopped Team Wiki."
    session = await orm(WorkspaceSession.objects.get, user=user)
    assert session.status == WorkspaceSession.Status.TERMINATED
    stop = await orm(AuditEntry.objects.filter(action="stop_workspace").get)
    assert stop.actor_id == user.pk and stop.resource == "workspace:ws-team-wiki"


async def test_a_browser_sessions_turn_runs_its_tools_as_the_signed_in_person(ask, user):
    """The assistant page streams with the session cookie (its user is a lazy object)."""
    streamed = await ask(user, {"inputs": ["What is running?"]}, cookie=True)

    assert_sse_contract(streamed)
    (result,) = streamed.of_type("tool_result")
    assert (result["name"], result["success"]) == ("list_sessions", True)
    entry = await orm(AuditEntry.objects.get, action="assistant_tool")
    assert (entry.actor_id, entry.success) == (user.pk, True)


def _turn_off(user):
    User.objects.filter(pk=user.pk).update(is_active=False)


def _new_password(user):
    account = User.objects.get(pk=user.pk)
    account.set_password("a-new-passphrase-nobody-knows")
    account.save()


def _sign_out_everywhere(user):
    user_sign_out_everywhere(user=user, actor=user, origin=Origin(ip="127.0.0.1"))


@pytest.mark.parametrize(
    "revoke",
    [_turn_off, _new_password, _sign_out_everywhere],
    ids=["turned off", "new password", "signed out everywhere"],
)
async def test_tools_stop_acting_for_an_account_revoked_mid_turn(
    ask, user, team_wiki, monkeypatch, revoke
):
    """The search runs; while it does, an administrator turns the account off (or its password
    is changed): the launch the model asks for next is refused, and nothing is launched."""
    search = tools.TOOLS["search_workspaces"]

    def search_then_revoke(ctx, arguments):
        answer = search.run(ctx, arguments)
        revoke(user)
        return answer

    monkeypatch.setitem(tools.TOOLS, "search_workspaces", tools.Tool(
        search.spec, search_then_revoke, search.display
    ))  # fmt: skip

    streamed = await ask(user, {"inputs": ["open the team wiki"]})

    assert_sse_contract(streamed)
    search_result, launch = streamed.of_type("tool_result")
    assert search_result["success"] is True
    assert launch["success"] is False
    assert launch["response"] == {"error": tools.ACCOUNT_REVOKED, "code": "account_revoked"}
    assert streamed.events[-2]["completion"].startswith("I could not launch Team Wiki: ")
    assert not await orm(WorkspaceSession.objects.exists)
    entries = await orm(lambda: list(AuditEntry.objects.order_by("id")))
    tools_used = [e for e in entries if e.action == "assistant_tool"]
    assert [(e.details.get("code"), e.success, e.actor_id) for e in tools_used] == [
        (None, True, user.pk),
        ("account_revoked", False, user.pk),
    ]


async def test_a_refused_launch_is_a_failed_tool_result_not_a_failed_turn(ask, user, team_wiki):
    def require_tunnel():
        team_wiki.requires_netbird = True
        team_wiki.save()

    await orm(require_tunnel)

    streamed = await ask(user, {"inputs": ["open the team wiki"]})

    assert_sse_contract(streamed)
    launch = streamed.of_type("tool_result")[-1]
    assert launch["name"] == "launch_workspace"
    assert launch["success"] is False
    assert launch["response"]["code"] == "tunnel_required"
    assert streamed.types[-2] == "complete"
    assert streamed.events[-2]["completion"].startswith("I could not launch Team Wiki: ")
    assert not await orm(WorkspaceSession.objects.exists)
    tool_entry = await orm(AuditEntry.objects.filter(action="assistant_tool").last)
    assert tool_entry.details["tool"] == "search_workspaces"  # ordering is newest first
    refused = await orm(
        lambda: list(AuditEntry.objects.filter(success=False).values_list("action", flat=True))
    )
    assert sorted(refused) == ["assistant_tool", "launch_workspace"]


async def test_the_assistant_cannot_see_or_stop_another_users_session(
    ask, user, other_user, admin_user, team_wiki
):
    await ask(other_user, {"inputs": ["open the team wiki"]})
    theirs = await orm(WorkspaceSession.objects.get, user=other_user)

    status = await ask(user, {"inputs": ["what is running?"]})
    stop = await ask(user, {"inputs": ["stop the team wiki"]})
    stop_all = await ask(user, {"inputs": ["stop everything"]})
    admin_status = await ask(admin_user, {"inputs": ["what is running?"]})

    assert status.of_type("tool_result")[0]["response"]["sessions"] == []
    assert admin_status.of_type("tool_result")[0]["response"]["sessions"] == []
    for streamed in (stop, stop_all):
        assert [e["name"] for e in streamed.of_type("tool_call")] == ["list_sessions"]
        assert streamed.events[-2]["completion"] == (
            "Nothing is running, so there is nothing to stop."
        )
    await orm(theirs.refresh_from_db)
    assert theirs.status == WorkspaceSession.Status.READY


async def test_list_and_search_answer_from_the_catalog(ask, user):
    listed = await ask(user, {"inputs": ["list my workspaces"]})
    found = await ask(user, {"inputs": ["search for browser"]})

    assert [e["name"] for e in listed.of_type("tool_call")] == ["list_workspaces"]
    names = [w["name"] for w in listed.of_type("tool_result")[0]["response"]["workspaces"]]
    assert names == [
        "SAP Neogénesys",
        "Remote Desktop",
        "1Panel Admin",
        "Linux Desktop",
        "Secure Browser",
    ]  # the five defaults, seeded by the catalog's own selector
    assert listed.events[-2]["completion"].startswith("There are 5 workspaces:\n- SAP")
    assert found.of_type("tool_call")[0]["arguments"] == {"query": "browser"}
    assert found.events[-2]["completion"] == (
        "2 workspaces match “browser”:\n"
        "- Linux Desktop (linux, ws-linux-desktop)\n"  # "streamed in the browser"
        "- Secure Browser (browser, ws-secure-browser)"
    )


async def test_the_same_question_gets_the_same_answer(ask, user, team_wiki):
    first = await ask(user, {"inputs": ["list my workspaces"]})
    second = await ask(user, {"inputs": ["list my workspaces"]})

    def strip(events):
        return [
            {k: v for k, v in e.items() if k not in ("responseDurationMs", "call_id")}
            for e in events
        ]

    assert strip(first.events) == strip(second.events)


async def test_a_question_it_does_not_understand_gets_help_and_no_tool(ask, user):
    streamed = await ask(user, {"inputs": ["tell me a joke"]})

    assert_sse_contract(streamed)
    assert streamed.of_type("tool_call") == []
    assert "open my Linux desktop" in streamed.events[-2]["completion"]


@pytest.mark.parametrize(
    "question",
    [
        "search " + "zz " * 10_664,  # its answer used to repeat the 32 KB query word by word
        "list " * 6_400,  # its intent used to take seconds to read, holding the event loop
    ],
    ids=["echo", "backtracking"],
)
async def test_a_huge_question_gets_an_answer_of_ordinary_size(ask, user, question):
    """The builtin assistant reads a question's first INTENT_TEXT_LIMIT characters: 32 KB of
    input used to come back as 170 MB of stream (every `stream` event carries the answer so far)."""
    streamed = await ask(user, {"inputs": [question]})

    assert streamed.status == 200
    assert streamed.events[-1] == {"type": "done"}
    answer = streamed.of_type("complete")[0]["outputs"][0]
    assert len(answer) < 2 * INTENT_TEXT_LIMIT
    assert len(streamed.raw) < 200_000
