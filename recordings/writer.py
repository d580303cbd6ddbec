"""The relay's side of a recording: `RecordingSink.put` on the event loop, one writer thread per
process doing everything else (spike 22, sections 4.2 and 12).

`put` is the hot path: a clock read, a tuple and a `deque.append` (no lock, no wake-up). While it
has sinks, the writer thread wakes every WAKE_SECONDS (or at once on a close); with none it waits
untimed until a sink is added. Each pass takes at most BATCH records from
a sink, then `time.sleep(0)` so the loop thread gets the GIL between batches; it compresses,
seals, hashes and writes through `format.RecordingWriter`.

Backpressure: when a sink's backlog (bytes put and not yet taken) reaches `high`, `on_pause` is
scheduled on the loop (the relay stops reading both sides, as for a slow browser); once the
writer brings it down to `low`, `on_resume`. A storage error, a backlog above `high` for longer
than `stall_timeout`, or one past twice `high` (the relay did not pause) fails the recording:
`on_failed(reason)` is scheduled, and further puts are dropped.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from recordings.format import RecordingWriter, Seal
from recordings.storage import Spool

logger = logging.getLogger(__name__)

BATCH = 64  # records per turn of the writer before it yields the GIL
WAKE_SECONDS = 0.005
DEFAULT_HIGH = 8 << 20


class RecordingSink:
    def __init__(
        self,
        spool: Spool,
        *,
        key: bytes,
        recording_id: str,
        loop: asyncio.AbstractEventLoop | None = None,
        started_at: datetime | None = None,
        meta: dict | None = None,
        high: int = DEFAULT_HIGH,
        low: int | None = None,
        stall_timeout: float = 30.0,
        on_pause: Callable[[], object] | None = None,
        on_resume: Callable[[], object] | None = None,
        on_failed: Callable[[str], object] | None = None,
    ) -> None:
        self._loop = loop or asyncio.get_running_loop()
        self._spool = spool
        self.recording_id = str(recording_id)
        self.started_at = started_at or datetime.now(UTC)
        self._started_ns = time.monotonic_ns()
        self.high = high
        self.low = high // 2 if low is None else low
        self.stall_timeout = stall_timeout
        self.on_pause = on_pause
        self.on_resume = on_resume
        self.on_failed = on_failed
        self._queue: collections.deque = collections.deque()
        # Each counter is written by one thread only (put: the loop; taken: the writer).
        self._put_bytes = 0
        self._taken_bytes = 0
        self.paused = False
        self._pauses = 0
        self._resume_asked = False
        self.failed: str | None = None
        self._closing: tuple[dict, asyncio.Future] | None = None
        self._seal: Seal | None = None
        self._writer = RecordingWriter(
            spool,
            key=key,
            recording_id=self.recording_id,
            started_at=self.started_at,
            meta=meta,
            sync=spool.sync,
        )
        _thread().add(self)

    @property
    def header(self) -> dict:
        return self._writer.header

    @property
    def backlog(self) -> int:
        """Bytes put and not yet taken by the writer thread."""
        return self._put_bytes - self._taken_bytes

    # --- the loop's side ----------------------------------------------------------------------

    def put(self, kind: int, participant: int, data: bytes) -> None:
        """Queue a chunk for the recording. Never blocks, never raises; `data` is copied when it
        is mutable (a `bytes` is immutable and kept as it is)."""
        try:
            if self.failed is not None or self._closing is not None:
                return
            chunk = bytes(data)
            self._queue.append((time.monotonic_ns(), kind, participant, chunk))
            self._put_bytes += len(chunk)
            backlog = self._put_bytes - self._taken_bytes
            if backlog >= self.high and not self.paused:
                self.paused = True
                self._pauses += 1
                self._call(self.on_pause)
                # Timed on the loop: a write that hangs holds the writer thread itself.
                self._loop.call_later(self.stall_timeout, self._stalled, self._pauses)
            if backlog > 2 * self.high:
                self._fail("the recording's backlog overflowed (the relay did not pause)")
        except Exception:  # the relay must never fail because of its recorder
            logger.exception("recording %s: put failed", self.recording_id)

    def _call(self, callback, *args) -> None:
        if callback is not None:
            self._loop.call_soon(callback, *args)

    def _fail(self, reason: str) -> None:
        """On the loop: mark failed once (later puts are dropped), tell the relay."""
        if self.failed is not None:
            return
        self.failed = reason
        self._call(self.on_failed, reason)

    def _stalled(self, pause: int) -> None:
        if self.paused and self._pauses == pause and self._seal is None:
            self._fail(f"recording storage stalled for {self.stall_timeout:g} s")

    def _resume(self) -> None:
        self._resume_asked = False
        if self.paused and self.backlog <= self.low:
            self.paused = False
            if self.failed is None and self.on_resume is not None:
                self.on_resume()

    async def close(self, end: dict) -> Seal:
        """Write what is queued, the END record (`end`) and the last segment, then rename the
        file to its key. The Seal says `failed` (with the reason) when the recording failed; its
        size and SHA-256 are then of what was written. Every sink must be closed: until then
        the writer thread keeps it."""
        if self._closing is None:
            self._closing = (dict(end), self._loop.create_future())
            _thread().wake()
        return await asyncio.shield(self._closing[1])

    # --- the writer thread's side -------------------------------------------------------------

    def _drain(self, budget: int) -> int:
        """Take and write up to `budget` records; how many were taken."""
        taken = 0
        queue = self._queue
        writer = self._writer
        started = self._started_ns
        size = 0
        try:
            while taken < budget and queue:
                at_ns, kind, participant, data = queue.popleft()
                taken += 1
                size += len(data)
                if self._seal is None and self.failed is None:
                    writer.add(kind, participant, (at_ns - started) // 1000, data)
        except Exception as exc:
            self._writer_failed(exc)
        finally:
            self._taken_bytes += size
        if self.paused and not self._resume_asked and self.backlog <= self.low:
            self._resume_asked = True
            self._loop.call_soon_threadsafe(self._resume)
        return taken

    def _tick(self) -> None:
        """Between batches: seal a segment that has grown old."""
        if self.failed is not None or self._seal is not None:
            return
        try:
            self._writer.cut_if_older((time.monotonic_ns() - self._started_ns) // 1000)
        except Exception as exc:
            self._writer_failed(exc)

    def _writer_failed(self, exc: Exception) -> None:
        reason = f"recording storage failed: {exc}"
        logger.warning("recording %s: %s", self.recording_id, reason)
        self._loop.call_soon_threadsafe(self._fail, reason)
        # The thread's own view, before the loop's _fail runs: write nothing more.
        self._seal = self._writer.seal(status="failed", error=reason)
        self._spool.abandon()

    def _finish(self) -> bool:
        """When closing and drained: seal the file and resolve close(); True once done."""
        if self._closing is None or self._queue:
            return False
        end, future = self._closing
        seal = self._seal
        if seal is None and self.failed is not None:
            seal = self._writer.seal(status="failed", error=self.failed)
            self._spool.abandon()
        elif seal is None:
            try:
                seal = self._writer.finish(end, (time.monotonic_ns() - self._started_ns) // 1000)
                self._spool.close()
            except Exception as exc:
                self._writer_failed(exc)
                seal = self._seal
        self._seal = seal

        def resolve() -> None:
            if not future.done():
                future.set_result(seal)

        self._loop.call_soon_threadsafe(resolve)
        return True


class _WriterThread:
    """The one thread per process that drains every sink."""

    def __init__(self) -> None:
        self._sinks: list[RecordingSink] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, sink: RecordingSink) -> None:
        with self._lock:
            self._sinks.append(sink)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="recording-writer", daemon=True
                )
                self._thread.start()
        self._wake.set()  # it may be waiting untimed, with no sinks

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while True:
            with self._lock:
                idle = not self._sinks
            # add() sets the event after appending: a sink added since the check is not missed.
            self._wake.wait(None if idle else WAKE_SECONDS)
            self._wake.clear()
            busy = True
            while busy:
                busy = False
                with self._lock:
                    sinks = list(self._sinks)
                for sink in sinks:
                    try:
                        if sink._drain(BATCH):
                            busy = True
                        elif sink._finish():
                            self._remove(sink)
                        sink._tick()
                    except RuntimeError:  # its event loop is closed: nobody will close it
                        self._remove(sink)
                        sink._spool.abandon()
                    time.sleep(0)  # let the loop thread have the GIL between batches

    def _remove(self, sink: RecordingSink) -> None:
        with self._lock:
            if sink in self._sinks:
                self._sinks.remove(sink)


_writer_thread = _WriterThread()


def _thread() -> _WriterThread:
    return _writer_thread
