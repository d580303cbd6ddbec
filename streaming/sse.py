"""The engine's events as Server-Sent Events: one `data: <json>` line and a blank line each.

The shapes are the streaming API guide's, which existing clients parse:
connected, stream (prompt cumulative, delta new), thinking (delta frames, then one done frame with
the full text and an optional signature), tool_call, tool_result, complete, error, done. A comment
line (`: keep-alive`) crosses the connection while a long tool call runs.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from django.http import StreamingHttpResponse

from streaming import events as ev

CONTENT_TYPE = "text/event-stream; charset=utf-8"
KEEPALIVE = b": keep-alive\n\n"


def _display(info: ev.DisplayInfo) -> dict[str, str]:
    return {"icon": info.icon, "label": info.label}


def event_payload(event: ev.Event) -> dict[str, Any] | None:
    """The wire shape of one event; None for events that travel as a comment line."""
    match event:
        case ev.Connected(message=message):
            return {"type": "connected", "message": message}
        case ev.TextDelta(delta=delta, prompt=prompt):
            return {"type": "stream", "prompt": prompt, "delta": delta}
        case ev.ThinkingDelta():
            return {"type": "thinking", "id": event.id, "round": event.round, "delta": event.delta}
        case ev.ThinkingDone():
            payload = {
                "type": "thinking",
                "id": event.id,
                "round": event.round,
                "text": event.text,
                "done": True,
            }
            if event.signature:
                payload["signature"] = event.signature
            return payload
        case ev.ToolCall():
            return {
                "type": "tool_call",
                "call_id": event.call_id,
                "name": event.name,
                "arguments": event.arguments,
                "displayInfo": _display(event.display),
            }
        case ev.ToolResult():
            return {
                "type": "tool_result",
                "call_id": event.call_id,
                "name": event.name,
                "response": event.response,
                "success": event.success,
                "responseDurationMs": event.duration_ms,
            }
        case ev.Complete():
            return {
                "type": "complete",
                "success": True,
                "usage": event.usage["total_tokens"],
                "usageDetails": event.usage,
                "outputs": event.outputs,
                "model": event.model,
                "cached": event.cached,
                "completion": event.completion,
            }
        case ev.Error(message=message, status=status):
            return {"type": "error", "error": {"message": message, "status": status}}
        case ev.Done():
            return {"type": "done"}
    return None  # ToolProgress and KeepAlive: the guide's SSE stream has only the comment line


def encode(event: ev.Event) -> bytes:
    payload = event_payload(event)
    if payload is None:
        return KEEPALIVE
    data = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=str)
    return b"data: " + data.encode() + b"\n\n"


async def sse_stream(events: AsyncIterator[ev.Event]) -> AsyncIterator[bytes]:
    # aclosing: however the response ends (a disconnect cancels the task iterating it), the
    # turn's generator is closed here and now, not whenever the garbage collector gets to it.
    async with contextlib.aclosing(events):
        async for event in events:
            yield encode(event)


def sse_response(events: AsyncIterator[ev.Event]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(sse_stream(events), content_type=CONTENT_TYPE)
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    return response
