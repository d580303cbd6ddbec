"""Reading a streamed response in a synchronous test."""

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
