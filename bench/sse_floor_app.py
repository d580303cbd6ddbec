"""The SSE benchmark's anchor: an ASGI app that answers every POST with the three events of the
shortest possible turn (connected, complete, done) and does nothing else.

Served by the same Daphne, hit by the same client with the same burst, it measures what one
Daphne process on this machine needs just to accept, parse and answer that many requests: the
floor under any application's time to first event.
"""

EVENTS = (
    b'data: {"type":"connected","message":"Connected"}\n\n',
    b'data: {"type":"complete","success":true}\n\n',
    b'data: {"type":"done"}\n\n',
)


async def application(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    headers = [
        (b"content-type", b"text/event-stream; charset=utf-8"),
        (b"cache-control", b"no-cache"),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    for number, event in enumerate(EVENTS, 1):
        await send({"type": "http.response.body", "body": event, "more_body": number < len(EVENTS)})
