"""Streamed responses in tests: reading one whole in a synchronous test, and the event contract
every Server-Sent Events stream of the assistant keeps."""

from __future__ import annotations

from asgiref.sync import async_to_sync
from django.http import StreamingHttpResponse


def streamed_body(response) -> bytes:
    """The whole body of a StreamingHttpResponse, whether its iterator is sync or async."""
    assert isinstance(response, StreamingHttpResponse)
    if not response.is_async:
        return b"".join(response.streaming_content)

    async def body() -> bytes:
        return b"".join([part async for part in response.streaming_content])

    return async_to_sync(body)()


def assert_sse_contract(streamed) -> None:
    """The streaming guide's invariants on a parsed SSE answer (tests/streaming/conftest.py's
    Streamed): connected first, done last, complete or error right before it."""
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
