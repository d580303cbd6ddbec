"""The relay's side: `put` never blocks the event loop and never raises, the backlog pauses and
resumes the relay at its marks, and storage that fails or stalls fails the recording
(recordings/writer.py; spike 22, section 4.2)."""

from __future__ import annotations

import asyncio
import errno
import os
import threading
import time
from datetime import UTC, datetime

import pytest

from recordings import writer
from recordings.format import Kind, RecordingReader, new_data_key
from recordings.storage import DirectoryStore
from recordings.writer import RecordingSink
from tests.recordings.traffic import synthetic_rfb

ID = "0b7e5a8c-4a43-4f5e-8a55-0a9d6c1f2e33"
MIB = 1 << 20


class GatedSpool:
    """A real spool whose writes, once `hold()` is called, wait until `release()` (a disk that
    stalls), or fail with `error` (a disk that fills)."""

    def __init__(self, spool) -> None:
        self._spool = spool
        self.object_key = spool.object_key
        self._open = threading.Event()
        self._open.set()
        self.error: OSError | None = None
        self.writing = threading.Event()

    def hold(self) -> None:
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def write(self, data: bytes) -> None:
        self.writing.set()
        self._open.wait(30)
        if self.error is not None:
            raise self.error
        self._spool.write(data)

    def sync(self) -> None:
        self._spool.sync()

    def close(self) -> None:
        self._spool.close()

    def abandon(self) -> None:
        self._spool.abandon()


@pytest.fixture
def store(tmp_path):
    return DirectoryStore(tmp_path)


class Events:
    def __init__(self) -> None:
        self.seen: list[str] = []

    def callbacks(self) -> dict:
        return {
            "on_pause": lambda: self.seen.append("pause"),
            "on_resume": lambda: self.seen.append("resume"),
            "on_failed": lambda reason: self.seen.append(f"failed: {reason}"),
        }


async def until(condition, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


async def test_what_is_put_is_recorded_and_sealed_with_the_files_digest(store):
    key = new_data_key()
    spool = store.open_spool(ID, datetime.now(UTC))
    sink = RecordingSink(spool, key=key, recording_id=ID, meta={"role": "owner"})
    chunks = synthetic_rfb(seconds=2)
    for kind, participant, _, data in chunks:
        sink.put(kind, participant, bytearray(data))  # a buffer the relay may reuse

    seal = await sink.close({"closed_by": "viewer", "close_code": 1000})

    assert seal.status == "complete" and seal.error is None
    assert store.size_and_sha256(spool.object_key) == (seal.size, seal.sha256)
    with open(store.path(spool.object_key), "rb") as stream:
        records = list(RecordingReader(stream, key).records())
    assert [(r.kind, r.participant, r.data) for r in records[:-1]] == [
        (kind, participant, data) for kind, participant, _, data in chunks
    ]
    assert records[-1].kind == Kind.END
    assert records[-1].data == b'{"close_code": 1000, "closed_by": "viewer"}'
    offsets = [r.offset_us for r in records]
    assert offsets == sorted(offsets)
    assert await sink.close({}) is seal  # a second close answers the same


async def test_a_reused_buffer_does_not_change_what_was_recorded(store):
    key = new_data_key()
    spool = store.open_spool(ID, datetime.now(UTC))
    sink = RecordingSink(spool, key=key, recording_id=ID)
    buffer = bytearray(b"first")
    sink.put(Kind.TO_VIEWER, 1, buffer)
    buffer[:] = b"later"
    await sink.close({})
    with open(store.path(spool.object_key), "rb") as stream:
        assert next(RecordingReader(stream, key).records()).data == b"first"


async def test_put_never_waits_for_storage_and_the_loop_keeps_running(store):
    gated = GatedSpool(store.open_spool(ID, datetime.now(UTC)))
    sink = RecordingSink(gated, key=new_data_key(), recording_id=ID, high=64 * MIB)
    gated.hold()
    try:
        sink.put(Kind.TO_VIEWER, 1, os.urandom(MIB + 1))  # the writer cuts, and waits on disk
        await asyncio.to_thread(gated.writing.wait, 5)
        slowest = 0.0
        started = time.perf_counter()
        for _ in range(20_000):
            before = time.perf_counter()
            sink.put(Kind.TO_VIEWER, 1, b"x" * 1024)
            slowest = max(slowest, time.perf_counter() - before)
        elapsed = time.perf_counter() - started
        ticked = time.perf_counter()
        await asyncio.sleep(0.01)
        assert time.perf_counter() - ticked < 0.5
        assert sink.backlog >= 20_000 * 1024
    finally:
        gated.release()
    seal = await sink.close({})
    assert seal.status == "complete"
    # Storage was held the whole time: a put that waited for it would not have returned at all.
    # The bounds only catch a put grown slow; they leave room for a loaded machine's scheduling
    # (the writer thread holds the GIL for up to a switch interval at a time).
    assert elapsed < 5.0, f"20,000 puts took {elapsed:.3f} s"
    assert slowest < 0.5, f"the slowest put took {slowest * 1e3:.1f} ms"


async def test_the_backlog_pauses_at_the_high_mark_and_resumes_at_the_low_one(store):
    events = Events()
    gated = GatedSpool(store.open_spool(ID, datetime.now(UTC)))
    sink = RecordingSink(
        gated, key=new_data_key(), recording_id=ID, high=2 * MIB, low=MIB, **events.callbacks()
    )
    gated.hold()
    try:
        sink.put(Kind.TO_VIEWER, 1, os.urandom(MIB + 1))
        await asyncio.to_thread(gated.writing.wait, 5)
        while sink.backlog < 2 * MIB - 4096:
            sink.put(Kind.TO_VIEWER, 1, b"y" * 4096)
        await asyncio.sleep(0.02)
        assert events.seen == [] and not sink.paused
        sink.put(Kind.TO_VIEWER, 1, b"y" * 4096)  # reaches the high mark
        assert sink.paused
        await asyncio.sleep(0)
        assert events.seen == ["pause"]
        sink.put(Kind.TO_VIEWER, 1, b"y" * 4096)  # still above: no second pause
        await asyncio.sleep(0.02)
        assert events.seen == ["pause"]
    finally:
        gated.release()
    await until(lambda: events.seen == ["pause", "resume"])
    assert sink.backlog <= MIB and not sink.paused
    assert (await sink.close({})).status == "complete"


async def test_a_storage_error_fails_the_recording_and_tells_the_relay(store):
    events = Events()
    gated = GatedSpool(store.open_spool(ID, datetime.now(UTC)))
    sink = RecordingSink(gated, key=new_data_key(), recording_id=ID, **events.callbacks())
    gated.error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    sink.put(Kind.TO_VIEWER, 1, os.urandom(MIB + 1))  # a segment to write

    await until(lambda: events.seen)
    assert events.seen == ["failed: recording storage failed: [Errno 28] No space left on device"]
    assert sink.failed
    sink.put(Kind.TO_VIEWER, 1, b"dropped")  # still never raises
    seal = await sink.close({})
    assert seal.status == "failed" and "No space left" in seal.error
    assert list(store.partials()) == [gated.object_key]  # the file never takes its final name
    assert store.size_and_sha256(gated.object_key + ".partial") == (seal.size, seal.sha256)
    await until(lambda: sink not in writer._writer_thread._sinks)  # the thread lets go of it


async def test_storage_that_stalls_past_the_timeout_fails_the_recording(store):
    events = Events()
    gated = GatedSpool(store.open_spool(ID, datetime.now(UTC)))
    sink = RecordingSink(
        gated,
        key=new_data_key(),
        recording_id=ID,
        high=MIB,
        stall_timeout=0.2,
        **events.callbacks(),
    )
    gated.hold()
    try:
        sink.put(Kind.TO_VIEWER, 1, os.urandom(MIB + 1))
        await until(lambda: events.seen == ["pause"])
        await asyncio.sleep(0.1)
        assert events.seen == ["pause"]
        await until(lambda: len(events.seen) == 2)
        assert events.seen[1] == "failed: recording storage stalled for 0.2 s"
    finally:
        gated.release()
    seal = await sink.close({})
    assert seal.status == "failed"
    assert events.seen[2:] == []  # no resume for a failed recording


async def test_a_relay_that_does_not_pause_overflows_the_backlog_and_fails(store):
    events = Events()
    gated = GatedSpool(store.open_spool(ID, datetime.now(UTC)))
    sink = RecordingSink(gated, key=new_data_key(), recording_id=ID, high=MIB, **events.callbacks())
    gated.hold()
    try:
        sink.put(Kind.TO_VIEWER, 1, os.urandom(MIB + 1))
        await asyncio.to_thread(gated.writing.wait, 5)
        for _ in range(3):
            sink.put(Kind.TO_VIEWER, 1, b"z" * MIB)
        await asyncio.sleep(0)
        assert events.seen == [
            "pause",
            "failed: the recording's backlog overflowed (the relay did not pause)",
        ]
    finally:
        gated.release()
    assert (await sink.close({})).status == "failed"


async def test_the_writer_thread_waits_untimed_once_it_has_no_sinks(store):
    """With sinks it wakes every WAKE_SECONDS; with none left it waits without a timeout (it does
    not keep waking for a process that recorded once), and a new sink wakes it."""
    waits: list[float | None] = []

    class Counted(threading.Event):
        def wait(self, timeout=None):
            waits.append(timeout)
            return super().wait(timeout)

    thread = writer._thread()
    old, counted = thread._wake, Counted()
    thread._wake = counted
    old.set()  # it may be waiting untimed on the old event
    try:
        for _ in range(2):  # the second sink is added while the thread waits untimed
            spool = store.open_spool(ID, datetime.now(UTC))
            sink = RecordingSink(spool, key=new_data_key(), recording_id=ID)
            sink.put(Kind.TO_VIEWER, 1, b"RFB 003.008\n")
            await until(lambda: writer.WAKE_SECONDS in waits)
            seal = await asyncio.wait_for(sink.close({}), 5)
            assert seal.status == "complete"
            await until(lambda: waits[-1] is None)
            await asyncio.sleep(0.05)  # its last passes after the close
            seen = len(waits)
            await asyncio.sleep(0.2)  # 40 wake-ups' worth
            assert len(waits) == seen and waits[-1] is None
            waits.clear()
            store.delete(spool.object_key)
    finally:
        thread._wake = old
        counted.set()
