"""The engine's seam for other transports: qanda_run with a sink and a cancel event."""

from __future__ import annotations

import asyncio

import pytest

from core.network import Origin
from streaming import events as ev
from streaming.engine import CANCELLED_STATUS, qanda_run, run_turn
from streaming.models import History
from streaming.services import turn_prepare
from tests.support.database import orm
from tests.support.providers import Reply, openai_chunk

pytestmark = pytest.mark.django_db(transaction=True)


class RecordingSink:
    def __init__(self, *, fail_after: int | None = None):
        self.events: list[ev.Event] = []
        self.cancelled = asyncio.Event()
        self.fail_after = fail_after

    async def send(self, event: ev.Event) -> None:
        if self.fail_after is not None and len(self.events) >= self.fail_after:
            raise ConnectionError("the socket went away")
        self.events.append(event)


async def prepare(user, **kwargs):
    return await orm(
        turn_prepare, user=user, origin=Origin(ip="127.0.0.1"), mfa_verified=False, **kwargs
    )


async def test_a_sink_receives_every_event_of_the_turn(user):
    turn = await prepare(user, inputs=["what is running?"])
    sink = RecordingSink()

    outcome = await qanda_run(turn, sink=sink, cancel=sink.cancelled)

    assert isinstance(sink.events[0], ev.Connected) and isinstance(sink.events[-1], ev.Done)
    assert isinstance(sink.events[-2], ev.Complete)
    kinds = {type(event) for event in sink.events}
    assert {ev.ThinkingDelta, ev.ThinkingDone, ev.ToolCall, ev.ToolResult, ev.TextDelta} <= kinds
    assert outcome.success and not outcome.streaming_failed
    assert outcome.outputs == sink.events[-2].outputs
    assert outcome.history_id == sink.events[-2].history_id


async def test_a_failing_sink_does_not_fail_the_turn(user):
    turn = await prepare(user, inputs=["what is running?"])
    sink = RecordingSink(fail_after=3)

    outcome = await qanda_run(turn, sink=sink)

    assert len(sink.events) == 3
    assert outcome.success and outcome.streaming_failed
    assert outcome.outputs[0].startswith("Nothing is running")


async def test_setting_cancel_stops_the_turn_and_its_provider_request(
    user, make_assistant, openai_server
):
    assistant = await orm(make_assistant, "openai", model="gpt-test")
    openai_server.script(
        Reply(
            [openai_chunk({"role": "assistant", "content": ""}), openai_chunk({"content": "Par"})],
            hang=True,
        )
    )
    turn = await prepare(user, inputs=["hi"], assistant_id=assistant.pk)
    sink = RecordingSink()

    async def cancel_on_first_text():
        while not any(isinstance(event, ev.TextDelta) for event in sink.events):
            await asyncio.sleep(0.01)
        sink.cancelled.set()

    canceller = asyncio.create_task(cancel_on_first_text())
    outcome = await qanda_run(turn, sink=sink, cancel=sink.cancelled)
    await canceller

    assert not outcome.success
    assert outcome.error.status == CANCELLED_STATUS
    history = await orm(History.objects.get)
    assert history.status == History.Status.CANCELLED and history.completion == "Par"
    assert await asyncio.to_thread(openai_server.client_left.wait, 10)


async def test_closing_the_generator_mid_turn_records_a_cancelled_turn(user):
    turn = await prepare(user, inputs=["what is running?"])
    events = run_turn(turn)

    async for event in events:
        if isinstance(event, ev.ToolResult):
            break
    await events.aclose()

    history = await orm(History.objects.get)
    assert history.status == History.Status.CANCELLED
    assert [call["name"] for call in history.tool_calls] == ["list_sessions"]
