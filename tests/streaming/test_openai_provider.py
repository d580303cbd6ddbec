"""The openai provider against a loopback server speaking streamed Chat Completions."""

from __future__ import annotations

import json
import ssl

import httpx
import pytest

from streaming.models import History
from streaming.providers import http
from tests.support.database import orm
from tests.support.nginx import self_signed
from tests.support.providers import (
    FakeProvider,
    Reply,
    openai_chunk,
    openai_event,
    openai_text_reply,
    openai_tool_reply,
)
from tests.support.streams import assert_sse_contract

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def assistant(make_assistant):
    return make_assistant(
        "openai", model="gpt-test", instructions="Answer like a librarian.", name="Librarian"
    )


def body(assistant, *inputs: str) -> dict:
    return {"inputs": list(inputs), "requestArgs": {"assistantId": str(assistant.pk)}}


async def test_reasoning_a_tool_call_and_the_answer_stream_in_order(
    ask, user, assistant, openai_server, team_wiki
):
    openai_server.script(
        openai_tool_reply("call_abc", "search_workspaces", '{"query": "wiki"}'),
        openai_text_reply("The Team ", "Wiki is ", "available.", reasoning=("It is ", "there.")),
    )

    streamed = await ask(user, body(assistant, "Is there a wiki?"))

    assert_sse_contract(streamed)
    assert streamed.types == [
        "connected",
        "tool_call",
        "tool_result",
        "thinking",
        "thinking",
        "thinking",
        "stream",
        "stream",
        "stream",
        "complete",
        "done",
    ]
    call, result = streamed.of_type("tool_call")[0], streamed.of_type("tool_result")[0]
    assert call == {
        "type": "tool_call",
        "call_id": "call_abc",
        "name": "search_workspaces",
        "arguments": {"query": "wiki"},
        "displayInfo": {"icon": "search", "label": 'Searching workspaces for "wiki"'},
    }
    assert result["success"] is True and result["response"]["count"] == 1
    thinking = streamed.of_type("thinking")
    assert [t["id"] for t in thinking] == ["round-1"] * 3
    assert thinking[-1] == {
        "type": "thinking",
        "id": "round-1",
        "round": 1,
        "text": "It is there.",
        "done": True,
    }
    assert streamed.events[-2] == {
        "type": "complete",
        "success": True,
        "usage": 43,
        "usageDetails": {
            "input_tokens": 30,
            "output_tokens": 13,
            "total_tokens": 43,
            "cached_input_tokens": 0,
        },
        "outputs": ["The Team Wiki is available."],
        "model": "gpt-test",
        "cached": False,
        "completion": "The Team Wiki is available.",
    }

    first, second = openai_server.requests
    assert openai_server.headers[0]["Authorization"] == "Bearer sk-test-openai"
    assert first["model"] == "gpt-test" and first["stream"] is True
    assert first["stream_options"] == {"include_usage": True}
    assert first["messages"][0]["role"] == "system"
    assert "Answer like a librarian." in first["messages"][0]["content"]
    assert first["messages"][1] == {"role": "user", "content": "Is there a wiki?"}
    assert {tool["function"]["name"] for tool in first["tools"]} == {
        "list_workspaces",
        "search_workspaces",
        "launch_workspace",
        "stop_workspace",
        "list_sessions",
    }
    assert second["messages"][2] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_abc",
                "type": "function",
                "function": {"name": "search_workspaces", "arguments": '{"query": "wiki"}'},
            }
        ],
    }
    tool_message = second["messages"][3]
    assert tool_message["role"] == "tool" and tool_message["tool_call_id"] == "call_abc"
    assert json.loads(tool_message["content"])["workspaces"][0]["id"] == "ws-team-wiki"

    history = await orm(History.objects.get)
    assert history.status == History.Status.COMPLETE and history.provider == "openai"
    assert history.thinking == [{"id": "round-1", "round": 1, "text": "It is there."}]
    assert history.tool_calls[0]["response"]["count"] == 1
    assert history.usage["total_tokens"] == 43


async def test_ollama_style_reasoning_and_a_stream_without_done_marker_still_complete(
    ask, user, assistant, openai_server
):
    openai_server.script(
        Reply(
            [
                openai_chunk({"role": "assistant", "reasoning": "Hmm."}),
                openai_chunk({"content": "Hello."}),
                openai_chunk(finish="stop"),
            ]
        )
    )

    streamed = await ask(user, body(assistant, "hi"))

    assert_sse_contract(streamed)
    assert [t.get("done", False) for t in streamed.of_type("thinking")] == [False, True]
    assert streamed.events[-2]["completion"] == "Hello."


@pytest.mark.parametrize("arguments", ["{not json", "[" * 100_000], ids=["broken", "too_deep"])
async def test_arguments_that_are_not_json_fail_the_tool_not_the_turn(
    ask, user, assistant, openai_server, arguments
):
    openai_server.script(
        openai_tool_reply("call_1", "launch_workspace", arguments),
        openai_text_reply("Sorry."),
    )

    streamed = await ask(user, body(assistant, "launch"))

    [result] = streamed.of_type("tool_result")
    assert result["success"] is False
    assert result["response"]["code"] == "invalid_arguments"
    assert streamed.events[-2]["completion"] == "Sorry."


@pytest.mark.parametrize(
    ("reply", "status", "message"),
    [
        (
            Reply(
                status=429, body={"error": {"message": "Slow down"}}, headers={"Retry-After": "7"}
            ),
            429,
            "The openai provider is rate limiting requests (retry after 7 s): Slow down",
        ),
        (
            Reply(status=500, body={"error": {"message": "boom", "type": "server_error"}}),
            502,
            "The openai provider answered 500: boom",
        ),
        (
            Reply([openai_chunk({"content": "Half an ans"})], drop=True),
            502,
            "The openai provider's connection broke off mid-answer.",
        ),
        (
            Reply([openai_chunk({"content": "Half"}), openai_event({"error": {"message": "oom"}})]),
            502,
            "The openai provider failed: oom",
        ),
    ],
    ids=["429", "500", "mid-stream-disconnect", "error-chunk"],
)
async def test_provider_failures_end_with_an_error_event_and_an_error_history(
    ask, user, assistant, openai_server, reply, status, message
):
    openai_server.script(reply)

    streamed = await ask(user, body(assistant, "hi"))

    assert_sse_contract(streamed)
    assert streamed.events[-2] == {"type": "error", "error": {"message": message, "status": status}}
    history = await orm(History.objects.get)
    assert history.status == History.Status.ERROR
    assert history.error_message == message


@pytest.mark.parametrize(
    "reply",
    [
        Reply(status=401, body={"error": {"message": "Incorrect API key: sk-test-openai"}}),
        Reply([openai_event({"error": {"message": "key sk-test-openai is over its quota"}})]),
    ],
    ids=["refusal", "error-chunk"],
)
async def test_a_provider_quoting_the_gateways_api_key_does_not_pass_it_on(
    ask, user, assistant, openai_server, reply
):
    """OpenAI masks a key it quotes; an OpenAI-compatible server might not."""
    openai_server.script(reply)

    streamed = await ask(user, body(assistant, "hi"))

    assert b"sk-test-openai" not in streamed.raw
    assert "[redacted]" in streamed.events[-2]["error"]["message"]
    history = await orm(History.objects.get)
    assert "sk-test-openai" not in history.error_message


async def test_a_provider_that_cannot_be_reached_is_an_error_event(ask, user, assistant, settings):
    from tests.support.processes import free_port

    settings.OPENAI_BASE_URL = f"http://127.0.0.1:{free_port()}/v1"

    streamed = await ask(user, body(assistant, "hi"))

    assert streamed.events[-2]["error"] == {
        "message": "The openai provider cannot be reached.",
        "status": 502,
    }


async def test_a_provider_that_stops_sending_mid_answer_times_out_and_is_let_go(
    ask, user, assistant, openai_server, monkeypatch
):
    """The read timeout holds on the providers' own network streams (providers/network.py):
    the turn ends with a 504 error event and the gateway closes the connection."""
    monkeypatch.setattr(http, "TIMEOUT", httpx.Timeout(10.0, read=0.2))
    openai_server.script(Reply([openai_chunk({"content": "Half"})], stall=True))

    streamed = await ask(user, body(assistant, "hi"))

    assert streamed.events[-2]["error"] == {
        "message": "The openai provider did not answer in time.",
        "status": 504,
    }
    assert openai_server.client_left.wait(5)
    history = await orm(History.objects.get)
    assert history.status == History.Status.ERROR


@pytest.mark.parametrize("provider_closes", [False, True], ids=["kept-alive", "closed-while-idle"])
async def test_a_turns_rounds_share_one_connection_unless_the_provider_closed_it(
    ask, user, assistant, openai_server, provider_closes
):
    """A turn's second round reuses the first round's connection; when the provider closed
    it in between without saying so, the round opens a new one instead of failing."""
    openai_server.script(
        Reply(openai_tool_reply("call_1", "list_workspaces", "{}").events, close=provider_closes),
        openai_text_reply("Here they are."),
    )

    streamed = await ask(user, body(assistant, "list"))

    assert streamed.events[-2]["completion"] == "Here they are."
    first, second = openai_server.peers
    assert (first != second) is provider_closes


async def test_a_provider_that_keeps_its_body_open_after_done_loses_the_connection_not_the_answer(
    ask, user, assistant, openai_server, monkeypatch
):
    monkeypatch.setattr(http, "BODY_END_SECONDS", 0.1)
    openai_server.script(Reply(openai_text_reply("All ", "there.").events, hang=True))

    streamed = await ask(user, body(assistant, "hi"))

    assert streamed.events[-2]["type"] == "complete"
    assert streamed.events[-2]["completion"] == "All there."
    assert openai_server.client_left.wait(5)
    history = await orm(History.objects.get)
    assert history.status == History.Status.COMPLETE


async def test_a_provider_is_reached_through_the_proxy_the_environment_names(
    ask, user, assistant, openai_server, settings, monkeypatch
):
    """An egress proxy named by HTTP(S)_PROXY is used as httpx would: the loopback server
    stands in for the proxy, the provider's own host does not resolve."""
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", openai_server.base_url)
    settings.OPENAI_BASE_URL = "http://provider.invalid/v1"
    openai_server.script(openai_text_reply("Through the proxy."))

    streamed = await ask(user, body(assistant, "hi"))

    assert streamed.events[-2]["completion"] == "Through the proxy."
    assert openai_server.targets == ["http://provider.invalid/v1/chat/completions"]


async def test_the_json_route_reports_a_provider_failure_in_the_error_shape(
    ask_json, user, assistant, openai_server
):
    openai_server.script(Reply(status=500, body={"error": {"message": "boom"}}))

    response = await ask_json(user, body(assistant, "hi"))

    assert response.status_code == 502
    assert response.json() == {
        "success": False,
        "detail": "The openai provider answered 500: boom",
        "code": "assistant_error",
    }


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [
        ("7", "7"),
        ("Wed, 21 Oct 2099 07:28:00 GMT", "3600"),  # a date: seconds from now, at most an hour
        ("soon", "30"),  # unreadable: the default
        (None, "30"),
    ],
)
async def test_the_json_route_passes_on_a_providers_429_with_retry_after(
    ask_json, user, assistant, openai_server, retry_after, expected
):
    headers = {"Retry-After": retry_after} if retry_after else {}
    openai_server.script(
        Reply(status=429, body={"error": {"message": "Slow down"}}, headers=headers)
    )

    response = await ask_json(user, body(assistant, "hi"))

    assert response.status_code == 429
    assert response.headers["Retry-After"] == expected
    assert response.json()["code"] == "assistant_error"
    assert f"(retry after {expected} s): Slow down" in response.json()["detail"]
    history = await orm(History.objects.get)
    assert history.status == History.Status.ERROR


async def test_the_last_round_asks_the_model_to_answer_without_another_tool(
    ask, user, assistant, openai_server, monkeypatch
):
    from streaming import engine

    monkeypatch.setattr(engine, "MAX_ROUNDS", 2)
    openai_server.script(
        openai_tool_reply("call_1", "list_workspaces", "{}"),
        openai_text_reply("Here they are."),
    )

    streamed = await ask(user, body(assistant, "list"))

    first, last = openai_server.requests
    assert "tool_choice" not in first
    assert last["tool_choice"] == "none" and last["tools"] == first["tools"]
    assert streamed.events[-2]["completion"] == "Here they are."


async def test_nul_characters_from_the_model_are_dropped_not_fatal(
    ask, user, assistant, openai_server
):
    """PostgreSQL cannot store U+0000; a model that emits one must not break the turn's records."""
    openai_server.script(
        openai_tool_reply("call_1", "search_workspaces", json.dumps({"query": "Lin\x00ux"})),
        openai_text_reply("Found\x00 it."),
    )

    streamed = await ask(user, body(assistant, "find linux"))

    [result] = streamed.of_type("tool_result")
    assert result["success"] is True
    assert result["response"]["query"] == "Linux"
    assert streamed.events[-2]["type"] == "complete"
    assert streamed.events[-2]["completion"] == "Found it."
    history = await orm(History.objects.get)
    assert history.status == "complete"
    assert history.tool_calls[0]["arguments"] == {"query": "Linux"}


async def test_a_line_separator_inside_a_chunk_is_text_not_the_end_of_a_line(
    ask, user, assistant, openai_server
):
    """JSON may carry U+2028 and U+2029 unescaped (servers that do not escape non-ASCII send
    them so); an SSE line ends only at CR or LF."""
    raw = json.loads(openai_chunk({"content": "One\u2028two\u2029three."})[len("data: ") :])
    openai_server.script(
        Reply([openai_event(json.dumps(raw, ensure_ascii=False)), openai_chunk(finish="stop")])
    )

    streamed = await ask(user, body(assistant, "hi"))

    assert streamed.events[-2]["completion"] == "One\u2028two\u2029three."


async def test_a_provider_answering_with_something_other_than_an_event_stream_is_an_error(
    ask, user, assistant, openai_server
):
    openai_server.script(
        Reply([openai_text_reply("Hi.").events[0]], headers={"Content-Type": "application/json"})
    )

    streamed = await ask(user, body(assistant, "hi"))

    assert streamed.events[-2]["error"] == {
        "message": "The openai provider did not answer with an event stream.",
        "status": 502,
    }


@pytest.fixture
def private_ca_provider(request, tmp_path, settings, monkeypatch):
    """An OpenAI-compatible server over HTTPS with a certificate no public CA signed (for
    127.0.0.1, or for the hosts the test's parameter names), and a process whose trust store
    starts empty of it."""
    cert, key = self_signed(tmp_path, *getattr(request, "param", ()))
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    server = FakeProvider(tls=tls).start()
    settings.OPENAI_BASE_URL = server.base_url + "/v1"
    settings.OPENAI_API_KEY = "sk-test-openai"
    http._trust.cache_clear()  # the process's context is made once; this test makes its own
    yield server, cert
    http._trust.cache_clear()
    server.stop()


@pytest.mark.parametrize("trusted", [True, False], ids=["ssl_cert_file", "untrusted"])
async def test_a_provider_behind_a_private_ca_is_trusted_through_ssl_cert_file(
    ask, user, assistant, private_ca_provider, monkeypatch, trusted
):
    """The providers' TLS context is made once per process, from SSL_CERT_FILE as httpx reads
    it; without that the certificate is refused, and the turn ends with an error event."""
    server, cert = private_ca_provider
    if trusted:
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    else:
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    server.script(openai_text_reply("Over TLS."))

    streamed = await ask(user, body(assistant, "hi"))

    if trusted:
        assert streamed.events[-2]["type"] == "complete"
        assert streamed.events[-2]["completion"] == "Over TLS."
    else:
        assert streamed.events[-2]["type"] == "error"
        assert server.requests == []  # the handshake failed before any request


@pytest.mark.parametrize("private_ca_provider", [(("provider.example",),)], indirect=True)
async def test_a_trusted_certificate_for_another_host_is_refused(
    ask, user, assistant, private_ca_provider, monkeypatch
):
    """The providers' network streams check the certificate's name against the host asked for,
    not only its signature."""
    server, cert = private_ca_provider
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    server.script(openai_text_reply("Over TLS."))

    streamed = await ask(user, body(assistant, "hi"))

    assert streamed.events[-2]["error"] == {
        "message": "The openai provider cannot be reached.",
        "status": 502,
    }
    assert server.requests == []


async def test_a_provider_sending_a_line_past_the_limit_ends_the_turn_not_the_process(
    ask, user, assistant, openai_server, monkeypatch
):
    """An event is read whole before it is handed on: a line (or an answer) past the gateway's
    limits is a 502, never a buffer that grows for as long as the provider sends."""
    monkeypatch.setattr(http, "MAX_LINE_CHARS", 4000)
    openai_server.script(
        Reply([openai_chunk({"content": "a" * 5000}), openai_chunk(finish="stop")])
    )

    streamed = await ask(user, body(assistant, "hi"))

    assert streamed.events[-2]["error"] == {
        "message": "The openai provider sent more than the gateway reads of an answer.",
        "status": 502,
    }


async def test_an_answer_within_the_limits_streams_whole(
    ask, user, assistant, openai_server, monkeypatch
):
    monkeypatch.setattr(http, "MAX_LINE_CHARS", 4000)
    openai_server.script(
        Reply([openai_chunk({"content": "a" * 3000}), openai_chunk(finish="stop")])
    )

    streamed = await ask(user, body(assistant, "hi"))

    assert streamed.events[-2]["completion"] == "a" * 3000
