"""What the two remote providers share: the HTTP client, the SSE reader, error translation."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import functools
import math
import re
import ssl
import urllib.request
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
from django.conf import settings
from httpx_sse import EventSource, SSEError

from core.parsers import json_loads
from streaming.providers.base import ProviderError
from streaming.providers.network import AsyncioTransport

# A model may think for a long while between two chunks; connecting should be quick.
TIMEOUT = httpx.Timeout(connect=10.0, read=300.0, write=30.0, pool=10.0)
# A provider's 429 is passed on with its Retry-After, kept within these bounds (seconds).
RETRY_AFTER_UNKNOWN = 30
RETRY_AFTER_MAX = 3600
# After a provider's last event, how long the rest of its body (normally only its end) may take
# before the connection is dropped rather than kept for the turn's next round.
BODY_END_SECONDS = 1.0


@functools.cache
def _trust() -> ssl.SSLContext:
    """The TLS context for providers, made once per process (honouring SSL_CERT_FILE as httpx
    does). httpx makes one per client, reading every CA certificate again: with a hundred
    answers streaming, 40% of a Daphne process's CPU (bench/sse_sustained.py)."""
    return httpx.create_ssl_context()


def new_client() -> httpx.AsyncClient:
    # One client per turn: the turn owns its connection, so cancelling the turn closes it.
    return httpx.AsyncClient(
        timeout=TIMEOUT,
        follow_redirects=False,
        verify=_trust(),
        # httpx reads the environment's proxies only for a client on its own transport.
        transport=None if _proxied() else AsyncioTransport(_trust()),
    )


def _proxied() -> bool:
    """Whether the environment names an egress proxy (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY), as
    httpx reads it: then the client keeps httpx's transport and its proxies, on anyio."""
    proxies = urllib.request.getproxies()
    return any(proxies.get(scheme) for scheme in ("http", "https", "all"))


# What one provider answer may send: lines (an event's JSON) of at most MAX_LINE_CHARS, and at
# most MAX_ANSWER_CHARS in all. An event is read whole before it is handed on, so without a
# bound a provider that never ends a line (or an event) would fill the process's memory.
MAX_LINE_CHARS = 1 << 20
MAX_ANSWER_CHARS = 64 << 20
_LINE_BREAK = re.compile("\r\n|\r|\n")


class _Bounded:
    """What EventSource reads of a response (its headers and its text), cut off past the
    limits with a ProviderError."""

    def __init__(self, response: httpx.Response, provider: str):
        self.headers = response.headers
        self._response = response
        self._provider = provider

    async def aiter_text(self) -> AsyncIterator[str]:
        line = total = 0  # the length of the line still open, and of everything read
        async for text in self._response.aiter_text():
            total += len(text)
            head, *rest = _LINE_BREAK.split(text)
            longest = line = line + len(head)
            if rest:
                line = len(rest[-1])
                longest = max(longest, *map(len, rest))
            if longest > MAX_LINE_CHARS or total > MAX_ANSWER_CHARS:
                raise ProviderError(
                    f"The {self._provider} provider sent more than the gateway reads of an answer."
                )
            yield text


async def sse_data(response: httpx.Response, provider: str) -> AsyncIterator[str]:
    """The `data` of each server-sent event (httpx-sse reads the stream: lines end at CR, LF or
    CRLF only, so a U+2028 inside a chunk's JSON stays in it). An event with no data is not
    dispatched, as the SSE standard says; a body that is not `text/event-stream` raises
    SSEError (see connection_failed); one past the limits above, ProviderError."""
    async for event in EventSource(_Bounded(response, provider)).aiter_sse():
        if event.data:
            yield event.data


async def read_to_end(events: AsyncIterator[str]) -> None:
    """Read what follows a provider's last event, normally only the end of the body, so that
    the connection goes back to the client's pool for the turn's next round (a tool call's
    answer) instead of being closed with a new one to open, TLS and all. A provider that keeps
    the body open loses the connection, never the answer."""
    with contextlib.suppress(TimeoutError, httpx.HTTPError, ProviderError):
        async with asyncio.timeout(BODY_END_SECONDS):
            async for _ in events:
                pass


def without_nul(value):
    """`value` with NUL characters removed from every string in it.

    A model may emit U+0000; PostgreSQL cannot store it in text or JSON columns, so a single NUL
    would make the turn's History and audit writes fail. Everything a provider sends passes here.
    """
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {without_nul(key): without_nul(item) for key, item in value.items()}
    if isinstance(value, list):
        return [without_nul(item) for item in value]
    return value


def loads(text: str):
    """json.loads for what a provider sent: NUL-free (see without_nul); ValueError for
    anything unreadable, nesting too deep included (a tool call's arguments are the model's)."""
    return without_nul(json_loads(text))


def load_json(data: str, provider: str) -> dict:
    try:
        value = loads(data)
    except ValueError as exc:
        raise ProviderError(f"The {provider} provider sent an unreadable event.") from exc
    if not isinstance(value, dict):
        raise ProviderError(f"The {provider} provider sent an unexpected event.")
    return value


def provider_message(text) -> str:
    """A provider's own words about a failure, as the user and the turn's History may see
    them: at most 300 characters, and never one of the gateway's API keys (OpenAI masks a key
    it quotes; any OpenAI-compatible server might not)."""
    message = str(text or "")
    for key in (settings.OPENAI_API_KEY, settings.ANTHROPIC_API_KEY):
        if key:
            message = message.replace(key, "[redacted]")
    return message[:300]


def _message_of(body: bytes) -> str:
    try:
        value = json_loads(body)
    except ValueError:
        return provider_message(body.decode("utf-8", "replace").strip())
    error = value.get("error") if isinstance(value, dict) else None
    if isinstance(error, dict):
        return provider_message(error.get("message") or error.get("type"))
    if isinstance(error, str):
        return provider_message(error)
    return provider_message(value.get("message", "") if isinstance(value, dict) else "")


def retry_after_seconds(value: str | None) -> int:
    """A Retry-After header (seconds, or an HTTP date) as whole seconds from now; when the
    provider gives none or an unreadable one, RETRY_AFTER_UNKNOWN."""
    value = (value or "").strip()
    if value.isascii() and value.isdigit():
        return max(1, min(int(value), RETRY_AFTER_MAX))
    try:
        at = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return RETRY_AFTER_UNKNOWN
    if at.tzinfo is None:
        return RETRY_AFTER_UNKNOWN
    seconds = math.ceil((at - datetime.now(UTC)).total_seconds())
    return max(1, min(seconds, RETRY_AFTER_MAX))


async def raise_for_status(response: httpx.Response, provider: str) -> None:
    """Turn a refusal into a ProviderError: 429 stays 429 (retry later), the rest are 502."""
    if response.status_code < 400:
        return
    message = _message_of(await response.aread())
    if response.status_code == 429:
        retry = retry_after_seconds(response.headers.get("retry-after"))
        raise ProviderError(
            f"The {provider} provider is rate limiting requests (retry after {retry} s): "
            f"{message}".rstrip(": "),
            429,
            retry,
        )
    raise ProviderError(
        f"The {provider} provider answered {response.status_code}: {message}".rstrip(": "), 502
    )


def connection_failed(exc: httpx.HTTPError, provider: str) -> ProviderError:
    if isinstance(exc, httpx.TimeoutException):
        return ProviderError(f"The {provider} provider did not answer in time.", 504)
    if isinstance(exc, httpx.ConnectError):
        return ProviderError(f"The {provider} provider cannot be reached.", 502)
    if isinstance(exc, SSEError):
        return ProviderError(f"The {provider} provider did not answer with an event stream.", 502)
    return ProviderError(f"The {provider} provider's connection broke off mid-answer.", 502)
