"""A loopback stand-in for an OpenAI-compatible model server, for bench/sse_sustained.py.

    python bench/openai_stream_app.py PORT TOKENS INTERVAL_MS

Every POST to /v1/chat/completions is answered as Chat Completions streams it: a role chunk,
TOKENS content chunks of one word each, one every INTERVAL_MS (a model generating at that pace),
the finish chunk, a usage chunk and [DONE]. It speaks the wire format only; it reads no prompt.
"""

from __future__ import annotations

import asyncio
import json
import sys

from aiohttp import web

PORT, TOKENS, INTERVAL = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]) / 1000


def chunk(delta: dict | None = None, finish: str | None = None, usage: dict | None = None):
    payload = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "bench-model",
        "choices": [] if usage else [{"index": 0, "delta": delta or {}, "finish_reason": finish}],
    }
    if usage:
        payload["usage"] = usage
    return f"data: {json.dumps(payload)}\n\n".encode()


async def completions(request: web.Request) -> web.StreamResponse:
    await request.read()
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    await response.write(chunk({"role": "assistant", "content": ""}))
    for n in range(TOKENS):
        await asyncio.sleep(INTERVAL)
        await response.write(chunk({"content": f"word{n} "}))
    await response.write(chunk(finish="stop"))
    usage = {"prompt_tokens": 50, "completion_tokens": TOKENS, "total_tokens": 50 + TOKENS}
    await response.write(chunk(usage=usage))
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


app = web.Application()
app.router.add_post("/v1/chat/completions", completions)
web.run_app(app, host="127.0.0.1", port=PORT, print=None, backlog=2048)
