"""One assistant turn: the model, the tools, the history, as a stream of typed events.

`run_turn(turn)` is an async generator of streaming.events: Connected first, Done last, and
Complete or Error right before Done. Transports only translate these events (streaming/sse.py
for Server-Sent Events); `qanda_run(turn, sink=..., cancel=...)` runs a whole turn for a
request/response API and forwards every event to a sink (a Socket.IO socket) on the way.

Cancelling is asyncio cancellation: cancel the task that iterates `run_turn` (Django does when an
SSE client disconnects), close the generator, or set `qanda_run`'s `cancel` event. The provider's
HTTP request is closed with it, and the history keeps what was produced, with status cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.database import in_db_thread
from core.network import Origin
from streaming import events as ev
from streaming.models import History
from streaming.providers import open_session
from streaming.providers.base import (
    ModelRequest,
    ProviderError,
    TextChunk,
    ThinkingChunk,
    ThinkingSigned,
    ToolOutcome,
    ToolRequest,
    UsageReport,
)
from streaming.tools import ToolContext, tool_call, tool_display, tool_specs

logger = logging.getLogger(__name__)

# While a tool runs, something must cross the connection this often or proxies close it.
KEEPALIVE_SECONDS = 15.0
# Model calls in one turn; the last is made without tools, so the model has to answer.
MAX_ROUNDS = 8
CANCELLED_STATUS = 499  # what a cancelled turn's error event carries (nginx's "client closed")


@dataclass(frozen=True)
class TurnRequest:
    """A validated request to run one turn (built by services.turn_prepare)."""

    user: Any
    inputs: list[str]
    provider: str
    model: str
    system: str
    origin: Origin
    mfa_verified: bool = False
    timezone: str = "UTC"
    show_thinking: bool = True
    show_tools: bool = True
    rag_only: bool = False
    thinking_budget_tokens: int = 0
    context: list[tuple[str, str]] = field(default_factory=list)
    institution_id: int | None = None
    conversation_id: int | None = None
    assistant_id: Any = None


@dataclass
class _Record:
    """What the turn produced so far; becomes the History row however the turn ends."""

    turn: TurnRequest
    started_at: datetime
    started: float
    model: str = ""
    text: str = ""
    thinking: list[dict] = field(default_factory=list)
    tool_calls: list[dict] = field(default_factory=list)
    usage: ev.Usage = field(default_factory=ev.Usage)

    def elapsed_ms(self) -> int:
        return int((time.monotonic() - self.started) * 1000)


def _history_save(record: _Record, status: str, error_message: str = "") -> int:
    """Store the turn, and let go of the user's turns past the newest
    WORKGATE_HISTORY_KEEP_PER_USER, so what one account can store has a bound."""
    turn = record.turn
    with transaction.atomic():
        history = History.objects.create(
            user=turn.user,
            institution_id=turn.institution_id,
            conversation_id=turn.conversation_id,
            assistant_id=turn.assistant_id,
            inputs=turn.inputs,
            completion=record.text,
            thinking=record.thinking if turn.show_thinking else [],
            tool_calls=record.tool_calls,
            usage=record.usage.as_dict(),
            cached=False,
            provider="none" if turn.rag_only else turn.provider,
            model=record.model,
            status=status,
            error_message=error_message,
            latency_ms=record.elapsed_ms(),
            created_at=record.started_at,
        )
        newest_first = History.objects.filter(user=turn.user).order_by("-created_at", "-id")
        keep = settings.WORKGATE_HISTORY_KEEP_PER_USER
        History.objects.filter(pk__in=newest_first.values("pk")[keep:]).delete()
    return history.pk


_save = in_db_thread(_history_save)
_tool = in_db_thread(tool_call)


class _ThinkingRound:
    """One round's thinking: deltas while it grows, one closing frame with the full text."""

    def __init__(self, record: _Record, round_index: int):
        self.record, self.round = record, round_index
        self.entry: dict | None = None
        self.open = False

    def add(self, text: str) -> ev.ThinkingDelta:
        if self.entry is None:
            self.entry = {"id": f"round-{self.round}", "round": self.round, "text": ""}
            self.record.thinking.append(self.entry)
        self.entry["text"] += text
        self.open = True
        return ev.ThinkingDelta(self.round, text)

    def close(self, signature: str | None = None) -> ev.ThinkingDone | None:
        if signature and self.entry is not None:
            self.entry["signature"] = signature
        if not self.open:
            return None
        self.open = False
        return ev.ThinkingDone(self.round, self.entry["text"], self.entry.get("signature"))


async def _run_tool(turn: TurnRequest, request: ToolRequest) -> AsyncIterator[Any]:
    """Run one tool, yielding a keep-alive every KEEPALIVE_SECONDS, then its ToolOutcome."""
    if request.invalid_arguments is not None:
        yield ToolOutcome(
            {"error": "The arguments were not a JSON object.", "code": "invalid_arguments"}, False
        )
        return
    context = ToolContext(
        user=turn.user, origin=turn.origin, mfa_verified=turn.mfa_verified, timezone=turn.timezone
    )
    # The tool runs in a database thread, which cannot be interrupted: if the turn is
    # cancelled meanwhile, the tool still finishes (and is audited); its result is dropped.
    task = asyncio.ensure_future(_tool(context, request.name, request.arguments))
    while not task.done():
        await asyncio.wait({task}, timeout=KEEPALIVE_SECONDS)
        if not task.done():
            display = tool_display(request.name, request.arguments)
            if turn.show_tools:
                yield ev.ToolProgress(request.call_id, request.name, display)
            else:
                yield ev.KeepAlive()
    yield task.result()


async def _tool_round(
    turn: TurnRequest, record: _Record, round_index: int, requests: list[ToolRequest]
) -> AsyncIterator[Any]:
    """Run a round's tool requests in order; yields events, then the (request, outcome) list."""
    results: list[tuple[ToolRequest, ToolOutcome]] = []
    for request in requests:
        display = tool_display(request.name, request.arguments)
        entry = {
            "call_id": request.call_id,
            "name": request.name,
            "arguments": request.arguments,
            "round": round_index,
            "response": None,
            "success": False,
            "duration_ms": 0,
        }
        record.tool_calls.append(entry)
        if turn.show_tools:
            yield ev.ToolCall(request.call_id, request.name, request.arguments, display)
        started = time.monotonic()
        outcome = None
        async for item in _run_tool(turn, request):
            if isinstance(item, ToolOutcome):
                outcome = item
            else:
                yield item
        duration_ms = int((time.monotonic() - started) * 1000)
        entry.update(response=outcome.response, success=outcome.success, duration_ms=duration_ms)
        if turn.show_tools:
            yield ev.ToolResult(
                request.call_id, request.name, outcome.response, outcome.success, duration_ms
            )
        results.append((request, outcome))
    yield results


async def _converse(turn: TurnRequest, record: _Record) -> AsyncIterator[ev.Event]:
    session = open_session(
        turn.provider,
        ModelRequest(
            model=turn.model,
            system=turn.system,
            inputs=turn.inputs,
            tools=tool_specs(),
            context=turn.context,
            thinking_budget_tokens=turn.thinking_budget_tokens,
            timezone=turn.timezone,
        ),
    )
    record.model = session.model
    try:
        for round_index in range(MAX_ROUNDS):
            thinking = _ThinkingRound(record, round_index)
            requests: list[ToolRequest] = []
            async for item in session.round(tools_enabled=round_index < MAX_ROUNDS - 1):
                record.model = session.model
                if isinstance(item, ThinkingChunk):
                    delta = thinking.add(item.text)
                    if turn.show_thinking:
                        yield delta
                    continue
                if isinstance(item, UsageReport):
                    record.usage.add(
                        input_tokens=item.input_tokens,
                        output_tokens=item.output_tokens,
                        cached=item.cached_input_tokens,
                    )
                    continue
                done = thinking.close(item.signature if isinstance(item, ThinkingSigned) else None)
                if done is not None and turn.show_thinking:
                    yield done
                if isinstance(item, TextChunk):
                    record.text += item.text
                    yield ev.TextDelta(item.text, record.text)
                elif isinstance(item, ToolRequest):
                    requests.append(item)
            done = thinking.close()
            if done is not None and turn.show_thinking:
                yield done
            if not requests:
                return
            async for item in _tool_round(turn, record, round_index, requests):
                if isinstance(item, list):
                    session.add_tool_results(item)
                else:
                    yield item
    finally:
        await session.aclose()


async def _search_only(turn: TurnRequest, record: _Record) -> AsyncIterator[ev.Event]:
    """ragOnly: the catalog search's results, written out, with no model involved."""
    query = " ".join(turn.inputs)
    request = ToolRequest("search-0", "search_workspaces", {"query": query})
    results: list[tuple[ToolRequest, ToolOutcome]] = []
    async for item in _tool_round(turn, record, 0, [request]):
        if isinstance(item, list):
            results = item
        else:
            yield item
    outcome = results[0][1]
    if not outcome.success:
        text = f"The search failed: {outcome.response.get('error')}"
    elif not outcome.response["workspaces"]:
        text = f"No workspace matches “{query}”."
    else:
        text = "\n".join(
            f"- {w['name']} ({w['type']}, {w['id']}): {w['description']}"
            for w in outcome.response["workspaces"]
        )
    record.text = text
    yield ev.TextDelta(text, text)


async def _save_cancelled(record: _Record) -> None:
    # Shielded: the save must land even if whoever cancelled the turn cancels again.
    save = asyncio.ensure_future(_save(record, History.Status.CANCELLED))
    try:
        await asyncio.shield(save)
    except Exception:
        logger.exception("could not record a cancelled assistant turn")


async def run_turn(turn: TurnRequest) -> AsyncIterator[ev.Event]:
    """Run one turn, yielding its events; see the module docstring for the guarantees."""
    record = _Record(turn=turn, started_at=timezone.now(), started=time.monotonic())
    try:
        yield ev.Connected()
        body = _search_only(turn, record) if turn.rag_only else _converse(turn, record)
        async with contextlib.aclosing(body):
            async for event in body:
                yield event
    except ProviderError as exc:
        history_id = await _save(record, History.Status.ERROR, exc.message)
        yield ev.Error(exc.message, exc.status, history_id, exc.retry_after)
    except (asyncio.CancelledError, GeneratorExit):
        await _save_cancelled(record)
        raise
    except Exception:
        logger.exception("assistant turn failed")
        message = "The assistant failed unexpectedly."
        history_id = await _save(record, History.Status.ERROR, message)
        yield ev.Error(message, 500, history_id)
    else:
        history_id = await _save(record, History.Status.COMPLETE)
        yield ev.Complete(
            outputs=[record.text] if record.text else [],
            completion=record.text,
            usage=record.usage.as_dict(),
            model="none" if turn.rag_only else record.model,
            cached=False,
            history_id=history_id,
            duration_ms=record.elapsed_ms(),
        )
    yield ev.Done()


# --- Running a whole turn for a request/response API -------------------------------------------


class EventSink(Protocol):
    """Where a turn's events go as they happen (a Socket.IO socket). `send` raising means the
    client is gone: the turn goes on, and its answer still comes back in the response.
    `cancelled` is set when the client asks for the turn to be cancelled."""

    cancelled: asyncio.Event

    async def send(self, event: ev.Event) -> None: ...


@dataclass(frozen=True)
class TurnOutcome:
    success: bool
    outputs: list[str]
    completion: str
    usage: dict[str, int]
    model: str
    history_id: int | None
    duration_ms: int
    streaming_failed: bool
    error: ev.Error | None = None


async def qanda_run(
    turn: TurnRequest, *, sink: EventSink | None = None, cancel: asyncio.Event | None = None
) -> TurnOutcome:
    """Run `turn` to its end, forwarding every event to `sink`; setting `cancel` stops it."""
    started = time.monotonic()
    state: dict[str, Any] = {"sink": sink, "failed": False, "last": None}

    async def consume() -> None:
        async with contextlib.aclosing(run_turn(turn)) as events:
            async for event in events:
                if isinstance(event, ev.Complete | ev.Error):
                    state["last"] = event
                if state["sink"] is not None:
                    try:
                        await state["sink"].send(event)
                    except Exception:
                        logger.info("a turn's event sink failed; answering without it")
                        state["sink"], state["failed"] = None, True

    consumer = asyncio.ensure_future(consume())
    try:
        if cancel is None:
            await consumer
        else:
            waiter = asyncio.ensure_future(cancel.wait())
            try:
                await asyncio.wait({consumer, waiter}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
            if not consumer.done():
                consumer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await consumer
                state["last"] = ev.Error("The request was cancelled.", CANCELLED_STATUS)
            else:
                consumer.result()
    except asyncio.CancelledError:
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer
        raise

    last = state["last"]
    elapsed = int((time.monotonic() - started) * 1000)
    if isinstance(last, ev.Complete):
        return TurnOutcome(
            success=True,
            outputs=last.outputs,
            completion=last.completion,
            usage=last.usage,
            model=last.model,
            history_id=last.history_id,
            duration_ms=last.duration_ms,
            streaming_failed=state["failed"],
        )
    return TurnOutcome(
        success=False,
        outputs=[],
        completion="",
        usage={},
        model="",
        history_id=getattr(last, "history_id", None),
        duration_ms=elapsed,
        streaming_failed=state["failed"],
        error=last,
    )
