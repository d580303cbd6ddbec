"""Loopback stand-ins for the paid AI providers, speaking their documented streaming wire formats.

A FakeProvider is a real HTTP server (aiohttp) on 127.0.0.1 in a thread of its own, so it serves
the test process and a Daphne subprocess alike. Each request takes the next scripted Reply:
server-sent events written one by one, an HTTP error, a stream that breaks off, or one that hangs
or stalls until the client goes away. It records every request body and the client's address,
and notices disconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import threading
from collections import deque
from dataclasses import dataclass, field

from aiohttp import web

from tests.support.processes import free_port


@dataclass
class Reply:
    events: list[str] = field(default_factory=list)  # encoded SSE events
    status: int = 200
    body: dict | None = None  # JSON body of an error answer
    headers: dict = field(default_factory=dict)  # of an error answer, or of the stream
    hang: bool = False  # after the events, keep the stream open until the client leaves
    drop: bool = False  # after the events, cut the connection mid-body
    stall: bool = False  # after the events, send nothing more until the client leaves
    close: bool = False  # a complete answer, then close the kept-alive connection unannounced


class LoopbackServer:
    """An aiohttp server on 127.0.0.1 in a thread of its own, answering every POST with
    `_handle`, so that code in this process and Daphne subprocesses reach it alike."""

    def __init__(self, *, tls: ssl.SSLContext | None = None):
        """`tls`: serve HTTPS with this server-side context."""
        self.port = free_port()
        self.tls = tls
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def start(self):
        self._thread.start()
        self._started.wait(10)
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        runner = web.AppRunner(app)
        self._loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", self.port, ssl_context=self.tls)
        self._loop.run_until_complete(site.start())
        self._started.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raise NotImplementedError


class FakeProvider(LoopbackServer):
    def __init__(self, *, tls: ssl.SSLContext | None = None):
        super().__init__(tls=tls)
        self.base_url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.replies: deque[Reply] = deque()
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.peers: list[tuple] = []  # the client's (host, port) for each request
        self.targets: list[str] = []  # each request's target, absolute when sent to a proxy
        self.client_left = threading.Event()

    def script(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    def reset(self) -> None:
        self.replies.clear()
        self.requests.clear()
        self.headers.clear()
        self.peers.clear()
        self.targets.clear()
        self.client_left.clear()

    # --- The server ---------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(await request.json())
        self.headers.append(dict(request.headers))
        self.peers.append(request.transport.get_extra_info("peername"))
        self.targets.append(request.raw_path if request.url.is_absolute() else request.path)
        reply = self.replies.popleft() if self.replies else Reply(status=500, body={"error": "x"})
        if reply.status != 200:
            return web.json_response(reply.body or {}, status=reply.status, headers=reply.headers)
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", **reply.headers}
        )
        await response.prepare(request)
        for event in reply.events:
            await response.write(event.encode())
            await asyncio.sleep(0.001)
        if reply.drop:
            request.transport.abort()
            return response
        if reply.stall:
            while request.transport is not None and not request.transport.is_closing():
                await asyncio.sleep(0.01)
            self.client_left.set()
            return response
        if reply.hang:
            try:
                while True:
                    # A comment line every few milliseconds: writing is how a server notices
                    # that the client has gone.
                    await response.write(b": still thinking\n\n")
                    await asyncio.sleep(0.02)
            except (ConnectionResetError, ConnectionError, RuntimeError):
                self.client_left.set()
                return response
        with contextlib.suppress(ConnectionError):
            # A client that has read the final event may hang up before the closing chunk.
            await response.write_eof()
        if reply.close:
            request.transport.close()
        return response


# --- OpenAI Chat Completions chunks ---------------------------------------------------------------


def openai_event(payload: dict | str) -> str:
    data = payload if isinstance(payload, str) else json.dumps(payload)
    return f"data: {data}\n\n"


def openai_chunk(delta: dict | None = None, finish: str | None = None, model="gpt-test") -> str:
    return openai_event(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": model,
            "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}],
        }
    )


def openai_usage(prompt: int, completion: int, cached: int = 0) -> str:
    return openai_event(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": "gpt-test",
            "choices": [],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
                "prompt_tokens_details": {"cached_tokens": cached},
            },
        }
    )


def openai_text_reply(*pieces: str, reasoning: tuple[str, ...] = (), usage=(10, 5)) -> Reply:
    events = [openai_chunk({"role": "assistant", "content": ""})]
    events += [openai_chunk({"reasoning_content": piece}) for piece in reasoning]
    events += [openai_chunk({"content": piece}) for piece in pieces]
    events += [openai_chunk(finish="stop"), openai_usage(*usage), openai_event("[DONE]")]
    return Reply(events)


def openai_tool_reply(call_id: str, name: str, arguments: str, *, usage=(20, 8)) -> Reply:
    """A tool call whose arguments arrive split over three chunks, as OpenAI sends them."""
    third = max(1, len(arguments) // 3)
    parts = [arguments[:third], arguments[third : 2 * third], arguments[2 * third :]]
    first = {
        "index": 0,
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": ""},
    }
    events = [openai_chunk({"role": "assistant", "content": None, "tool_calls": [first]})]
    events += [
        openai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": part}}]})
        for part in parts
    ]
    events += [openai_chunk(finish="tool_calls"), openai_usage(*usage), openai_event("[DONE]")]
    return Reply(events)


# --- Anthropic Messages events ------------------------------------------------------------------


def anthropic_event(name: str, payload: dict) -> str:
    return f"event: {name}\ndata: {json.dumps({'type': name, **payload})}\n\n"


def anthropic_start(input_tokens: int = 30, cache_read: int = 0) -> str:
    return anthropic_event(
        "message_start",
        {
            "message": {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "content": [],
                "model": "claude-test",
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {
                    "input_tokens": input_tokens,
                    "cache_read_input_tokens": cache_read,
                    "output_tokens": 1,
                },
            }
        },
    )


def anthropic_thinking_block(index: int, pieces: tuple[str, ...], signature: str) -> list[str]:
    return [
        anthropic_event(
            "content_block_start",
            {
                "index": index,
                "content_block": {"type": "thinking", "thinking": "", "signature": ""},
            },
        ),
        *[
            anthropic_event(
                "content_block_delta",
                {"index": index, "delta": {"type": "thinking_delta", "thinking": piece}},
            )
            for piece in pieces
        ],
        anthropic_event(
            "content_block_delta",
            {"index": index, "delta": {"type": "signature_delta", "signature": signature}},
        ),
        anthropic_event("content_block_stop", {"index": index}),
    ]


def anthropic_text_block(index: int, pieces: tuple[str, ...]) -> list[str]:
    return [
        anthropic_event(
            "content_block_start", {"index": index, "content_block": {"type": "text", "text": ""}}
        ),
        *[
            anthropic_event(
                "content_block_delta",
                {"index": index, "delta": {"type": "text_delta", "text": piece}},
            )
            for piece in pieces
        ],
        anthropic_event("content_block_stop", {"index": index}),
    ]


def anthropic_tool_block(index: int, tool_id: str, name: str, arguments: str) -> list[str]:
    half = len(arguments) // 2
    return [
        anthropic_event(
            "content_block_start",
            {
                "index": index,
                "content_block": {"type": "tool_use", "id": tool_id, "name": name, "input": {}},
            },
        ),
        *[
            anthropic_event(
                "content_block_delta",
                {"index": index, "delta": {"type": "input_json_delta", "partial_json": part}},
            )
            for part in (arguments[:half], arguments[half:])
        ],
        anthropic_event("content_block_stop", {"index": index}),
    ]


def anthropic_end(stop_reason: str, output_tokens: int) -> list[str]:
    return [
        anthropic_event(
            "message_delta",
            {
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": output_tokens},
            },
        ),
        anthropic_event("message_stop", {}),
    ]
