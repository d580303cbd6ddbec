"""Any OpenAI-compatible Chat Completions server (OpenAI, vLLM, Ollama, llama.cpp), streamed.

Wire format: POST {OPENAI_BASE_URL}/chat/completions with `stream: true` answers server-sent events
whose data are `chat.completion.chunk` objects, then `data: [DONE]`. Text arrives in
`choices[0].delta.content`; reasoning (where the server exposes it) in `delta.reasoning_content`
(vLLM, DeepSeek) or `delta.reasoning` (Ollama, OpenRouter); tool calls in `delta.tool_calls`, their
`function.arguments` spread over chunks by `index`. With `stream_options.include_usage` the last
chunk carries `usage` and no choices.
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

NAME = "openai"
DEFAULT_MODEL = "gpt-4o-mini"


def _tool_schema(tool) -> dict:
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.parameters,
        },
    }


class OpenAISession(ModelSession):
    provider = NAME

    def __init__(self, request: ModelRequest):
        self.model = request.model or DEFAULT_MODEL
        self._tools = [_tool_schema(tool) for tool in request.tools]
        self._messages: list[dict[str, Any]] = [{"role": "system", "content": request.system}]
        for question, answer in request.context:
            self._messages.append({"role": "user", "content": question})
            self._messages.append({"role": "assistant", "content": answer})
        self._messages.append({"role": "user", "content": "\n\n".join(request.inputs)})
        self._client = new_client()

    def _body(self, tools_enabled: bool) -> dict:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": self._messages,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if self._tools:
            # Declared on every round (earlier messages refer to them); "none" makes the last
            # round answer instead of calling another tool.
            body["tools"] = self._tools
            if not tools_enabled:
                body["tool_choice"] = "none"
        return body

    async def round(self, *, tools_enabled: bool) -> AsyncIterator[ModelEvent]:
        url = settings.OPENAI_BASE_URL.rstrip("/") + "/chat/completions"
        headers = {"Accept": "text/event-stream"}
        if settings.OPENAI_API_KEY:
            headers["Authorization"] = f"Bearer {settings.OPENAI_API_KEY}"
        text: list[str] = []
        calls: dict[int, dict[str, str]] = {}
        finished = False
        try:
            async with self._client.stream(
                "POST", url, json=self._body(tools_enabled), headers=headers
            ) as response:
                await raise_for_status(response, NAME)
                events = sse_data(response, NAME)
                async for data in events:
                    if data.strip() == "[DONE]":
                        finished = True
                        await read_to_end(events)
                        break
                    chunk = load_json(data, NAME)
                    if chunk.get("error"):
                        error = chunk["error"]
                        message = error.get("message") if isinstance(error, dict) else error
                        raise ProviderError(
                            f"The {NAME} provider failed: {provider_message(message)}"
                        )
                    self.model = chunk.get("model") or self.model
                    usage = chunk.get("usage")
                    if isinstance(usage, dict):
                        details = usage.get("prompt_tokens_details") or {}
                        yield UsageReport(
                            input_tokens=int(usage.get("prompt_tokens") or 0),
                            output_tokens=int(usage.get("completion_tokens") or 0),
                            cached_input_tokens=int(details.get("cached_tokens") or 0),
                        )
                    for choice in chunk.get("choices") or []:
                        delta = choice.get("delta") or {}
                        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
                        if isinstance(reasoning, str) and reasoning:
                            yield ThinkingChunk(reasoning)
                        content = delta.get("content")
                        if isinstance(content, str) and content:
                            text.append(content)
                            yield TextChunk(content)
                        for part in delta.get("tool_calls") or []:
                            call = calls.setdefault(
                                int(part.get("index") or 0), {"id": "", "name": "", "args": ""}
                            )
                            function = part.get("function") or {}
                            call["id"] = part.get("id") or call["id"]
                            call["name"] = function.get("name") or call["name"]
                            call["args"] += function.get("arguments") or ""
                        if choice.get("finish_reason"):
                            finished = True
        except httpx.HTTPError as exc:
            raise connection_failed(exc, NAME) from exc
        if not finished:
            raise ProviderError(f"The {NAME} provider closed the stream before finishing.")

        requests = [self._request_of(index, call) for index, call in sorted(calls.items())]
        message: dict[str, Any] = {"role": "assistant", "content": "".join(text) or None}
        if requests:
            message["tool_calls"] = [
                {
                    "id": request.call_id,
                    "type": "function",
                    "function": {"name": request.name, "arguments": calls[index]["args"]},
                }
                for index, request in zip(sorted(calls), requests, strict=True)
            ]
        self._messages.append(message)
        for request in requests:
            yield request

    @staticmethod
    def _request_of(index: int, call: dict[str, str]) -> ToolRequest:
        call_id = call["id"] or f"call_{index}"
        try:
            arguments = loads(call["args"]) if call["args"].strip() else {}
        except ValueError:
            return ToolRequest(call_id, call["name"], {}, invalid_arguments=call["args"])
        if not isinstance(arguments, dict):
            return ToolRequest(call_id, call["name"], {}, invalid_arguments=call["args"])
        return ToolRequest(call_id, call["name"], arguments)

    def add_tool_results(self, results: list[tuple[ToolRequest, ToolOutcome]]) -> None:
        for request, outcome in results:
            self._messages.append(
                {
                    "role": "tool",
                    "tool_call_id": request.call_id,
                    "content": json.dumps(outcome.response, default=str),
                }
            )

    async def aclose(self) -> None:
        await self._client.aclose()
