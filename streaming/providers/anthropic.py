"""The Anthropic Messages API, streamed, with extended thinking and tool use.

Wire format: POST {ANTHROPIC_BASE_URL}/v1/messages with `stream: true` answers server-sent events:
message_start (model, input usage), then per content block content_block_start /
content_block_delta (text_delta, thinking_delta, signature_delta, input_json_delta) /
content_block_stop, then message_delta (stop_reason, output usage) and message_stop; `ping` may come
at any time and `error` ends the stream. A tool_use block's input arrives as partial JSON strings.
The assistant's content blocks go back verbatim in the next request, thinking blocks with their
signatures, followed by a user message of tool_result blocks.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
from django.conf import settings

from streaming.providers.base import (
    ModelEvent,
    ModelRequest,
    ModelSession,
    ProviderError,
    TextChunk,
    ThinkingChunk,
    ThinkingSigned,
    ToolOutcome,
    ToolRequest,
    UsageReport,
)
from streaming.providers.http import (
    connection_failed,
    load_json,
    loads,
    new_client,
    provider_message,
    raise_for_status,
    read_to_end,
    sse_data,
)

NAME = "anthropic"
DEFAULT_MODEL = "claude-sonnet-4-5"
API_VERSION = "2023-06-01"
ANSWER_TOKENS = 4096
MIN_THINKING_BUDGET = 1024  # the API's floor for budget_tokens

# Stream error types and the status the client is told.
_ERROR_STATUS = {"rate_limit_error": 429, "overloaded_error": 503}


class AnthropicSession(ModelSession):
    provider = NAME

    def __init__(self, request: ModelRequest):
        self.model = request.model or DEFAULT_MODEL
        self._system = request.system
        self._tools = [
            {"name": tool.name, "description": tool.description, "input_schema": tool.parameters}
            for tool in request.tools
        ]
        budget = request.thinking_budget_tokens
        self._thinking_budget = budget if budget >= MIN_THINKING_BUDGET else 0
        self._messages: list[dict[str, Any]] = []
        for question, answer in request.context:
            self._messages.append({"role": "user", "content": question})
            self._messages.append({"role": "assistant", "content": answer})
        self._messages.append(
            {
                "role": "user",
                "content": [{"type": "text", "text": text} for text in request.inputs],
            }
        )
        self._client = new_client()

    def _body(self, tools_enabled: bool) -> dict:
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": ANSWER_TOKENS + self._thinking_budget,
            "system": self._system,
            "messages": self._messages,
            "stream": True,
        }
        if self._thinking_budget:
            body["thinking"] = {"type": "enabled", "budget_tokens": self._thinking_budget}
        if self._tools:
            # The tools stay declared (earlier tool_use blocks refer to them); "none" stops
            # the model from calling another one on the last round.
            body["tools"] = self._tools
            if not tools_enabled:
                body["tool_choice"] = {"type": "none"}
        return body

    async def round(self, *, tools_enabled: bool) -> AsyncIterator[ModelEvent]:
        url = settings.ANTHROPIC_BASE_URL.rstrip("/") + "/v1/messages"
        headers = {"anthropic-version": API_VERSION, "accept": "text/event-stream"}
        if settings.ANTHROPIC_API_KEY:
            headers["x-api-key"] = settings.ANTHROPIC_API_KEY
        blocks: dict[int, dict[str, Any]] = {}
        partial_json: dict[int, list[str]] = {}
        stopped = False
        try:
            async with self._client.stream(
                "POST", url, json=self._body(tools_enabled), headers=headers
            ) as response:
                await raise_for_status(response, NAME)
                events = sse_data(response, NAME)
                async for data in events:
                    event = load_json(data, NAME)
                    kind = event.get("type")
                    if kind == "message_start":
                        message = event.get("message") or {}
                        self.model = message.get("model") or self.model
                        usage = message.get("usage") or {}
                        yield UsageReport(
                            input_tokens=int(usage.get("input_tokens") or 0)
                            + int(usage.get("cache_creation_input_tokens") or 0)
                            + int(usage.get("cache_read_input_tokens") or 0),
                            cached_input_tokens=int(usage.get("cache_read_input_tokens") or 0),
                        )
                    elif kind == "content_block_start":
                        index = int(event.get("index") or 0)
                        blocks[index] = dict(event.get("content_block") or {})
                        if blocks[index].get("type") == "tool_use":
                            partial_json[index] = []
                    elif kind == "content_block_delta":
                        chunk = self._apply_delta(blocks, partial_json, event)
                        if chunk is not None:
                            yield chunk
                    elif kind == "content_block_stop":
                        index = int(event.get("index") or 0)
                        block = blocks.get(index, {})
                        if block.get("type") == "thinking":
                            yield ThinkingSigned(block.get("signature") or "")
                        elif block.get("type") == "tool_use":
                            yield self._tool_request(block, partial_json.get(index, []))
                    elif kind == "message_delta":
                        usage = event.get("usage") or {}
                        if usage.get("output_tokens"):
                            yield UsageReport(output_tokens=int(usage["output_tokens"]))
                    elif kind == "message_stop":
                        stopped = True
                        await read_to_end(events)
                        break
                    elif kind == "error":
                        error = event.get("error") or {}
                        raise ProviderError(
                            "The {} provider failed: {}".format(
                                NAME, provider_message(error.get("message") or "error")
                            ),
                            _ERROR_STATUS.get(error.get("type"), 502),
                        )
        except httpx.HTTPError as exc:
            raise connection_failed(exc, NAME) from exc
        if not stopped:
            raise ProviderError(f"The {NAME} provider closed the stream before finishing.")
        content = [self._for_transcript(blocks[index]) for index in sorted(blocks)]
        # The API refuses empty text blocks, which a response may open and never fill.
        content = [block for block in content if block != {"type": "text", "text": ""}]
        if content:
            self._messages.append({"role": "assistant", "content": content})

    @staticmethod
    def _apply_delta(blocks, partial_json, event) -> ModelEvent | None:
        index = int(event.get("index") or 0)
        block = blocks.setdefault(index, {})
        delta = event.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta":
            block["text"] = block.get("text", "") + delta.get("text", "")
            return TextChunk(delta.get("text", "")) if delta.get("text") else None
        if kind == "thinking_delta":
            block["thinking"] = block.get("thinking", "") + delta.get("thinking", "")
            return ThinkingChunk(delta["thinking"]) if delta.get("thinking") else None
        if kind == "signature_delta":
            block["signature"] = block.get("signature", "") + delta.get("signature", "")
        elif kind == "input_json_delta":
            partial_json.setdefault(index, []).append(delta.get("partial_json", ""))
        return None

    @staticmethod
    def _tool_request(block: dict, parts: list[str]) -> ToolRequest:
        raw = "".join(parts)
        try:
            arguments = loads(raw) if raw.strip() else dict(block.get("input") or {})
        except ValueError:
            arguments = None
        call_id, name = str(block.get("id") or ""), str(block.get("name") or "")
        if not isinstance(arguments, dict):
            block["input"] = {}
            return ToolRequest(call_id, name, {}, invalid_arguments=raw)
        block["input"] = arguments
        return ToolRequest(call_id, name, arguments)

    @staticmethod
    def _for_transcript(block: dict) -> dict:
        """The block as the next request must repeat it (the API refuses unknown keys)."""
        kind = block.get("type")
        if kind == "thinking":
            return {
                "type": "thinking",
                "thinking": block.get("thinking", ""),
                "signature": block.get("signature", ""),
            }
        if kind == "tool_use":
            return {
                "type": "tool_use",
                "id": block.get("id", ""),
                "name": block.get("name", ""),
                "input": block.get("input") or {},
            }
        if kind == "text":
            return {"type": "text", "text": block.get("text", "")}
        return block  # redacted_thinking and anything newer goes back untouched

    def add_tool_results(self, results: list[tuple[ToolRequest, ToolOutcome]]) -> None:
        self._messages.append(
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": request.call_id,
                        "content": json.dumps(outcome.response, default=str),
                        "is_error": not outcome.success,
                    }
                    for request, outcome in results
                ],
            }
        )

    async def aclose(self) -> None:
        await self._client.aclose()
