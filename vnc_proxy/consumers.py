"""The VNC relay: `/api/agents/workspace/vnc/<workspaceId>?ticket=<jwt>`.

The ticket is the only credential. It is spent and checked before the handshake is accepted and
before the desktop is contacted; a refusal accepts the handshake only to close it at once with a
named code (see close_codes.py), so a viewer can tell the user why. An admitted connection joins
its session's channel-layer group (a stop from any server process closes it) and its account's
(signing out everywhere closes it: accounts/connections.py), connects to the
desktop (TCP to a plain RFB server, or a WebSocket with HTTP Basic auth to a KasmVNC-style one),
and then moves bytes both ways until either side closes, which closes the other.

This is a plain ASGI application, not a Channels consumer class: AsyncConsumer hops to a worker
thread (close_old_connections) for every message it dispatches, which would cost more than the
relaying itself. The hot path here is `_browser_to_desktop` and `_desktop_to_browser`: no ORM,
no logging, no per-message allocation beyond the payloads, and waits only where flow control
says to (see browser.py and upstreams.py). The database is touched when a connection is
admitted, opened and closed, and every 30 seconds while it is open (services.relay_check: still
ready, still signed in; and last_seen_at while traffic flows).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from urllib.parse import parse_qsl

from django.conf import settings

from accounts.connections import ACCOUNT_SIGNED_OUT, account_group
from core.database import RELAY, in_db_thread
from core.groups import Membership
from core.network import Origin
from sessions_app.models import SESSION_ENDED
from vnc_proxy import services
from vnc_proxy.browser import AsgiBrowser, DaphneBrowser, browser_for
from vnc_proxy.close_codes import CloseCode
from vnc_proxy.upstreams import TcpUpstream, UpstreamError, upstream_open

logger = logging.getLogger(__name__)

# Seconds between an open relay's checks of its session and account (services.relay_check),
# which also move last_seen_at on while traffic flows.
SEEN_INTERVAL = 30.0
# Relays winding down after they were cancelled: referenced until done.
_WINDING_DOWN: set[asyncio.Future] = set()
STUCK_CHECKS = 4  # intervals after which a check still running no longer holds the next one
DESKTOP_CLOSED = "the desktop closed the connection"


@functools.cache  # made once per function, not on every call: it costs as much as a hop
def _db(function):
    """`function` on the relay's own database threads (core.database): each call is
    self-contained, outside any transaction, and never queues behind the assistant's calls."""
    return in_db_thread(function, threads=RELAY)


def _ticket_of(scope: dict) -> str:
    query = scope.get("query_string", b"").decode("latin-1")
    try:
        fields = parse_qsl(query, max_num_fields=20)
    except ValueError:  # more fields than any viewer sends: no ticket, not a crash
        return ""
    for name, value in fields:
        if name == "ticket":
            return value
    return ""


class VncRelay:
    """The ASGI application for one route; one RelayConnection per WebSocket."""

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "websocket":
            raise ValueError("the VNC relay speaks WebSocket only")
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        await RelayConnection(scope, browser_for(receive, send)).run()


class RelayConnection:
    def __init__(self, scope: dict, browser: AsgiBrowser):
        self.browser = browser
        self.workspace_id = scope["url_route"]["kwargs"]["workspace_id"]
        self.ticket = _ticket_of(scope)
        self.origin = Origin.of_scope(scope)
        self.subprotocol = "binary" if "binary" in scope.get("subprotocols", ()) else None
        self.bytes_to_browser = 0
        self.bytes_to_desktop = 0
        self.close_code: int | None = None
        self.closed_by = "browser"
        self.upstream = None
        self.target: services.RelayTarget | None = None
        # The bookkeeping call made once the desktop answered or failed: (kind, its future).
        self._bookkeeping: tuple[str, asyncio.Future] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._background: set[asyncio.Task] = set()

    async def run(self) -> None:
        try:
            self.target = await _db(services.relay_admit)(
                ticket=self.ticket, workspace_id=self.workspace_id, origin=self.origin
            )
        except services.RelayRefused as refused:
            await self.browser.accept(self.subprotocol)
            await self.browser.close(refused.code, refused.reason)
            return
        finally:
            self.ticket = ""  # spent or refused: nothing keeps it from here on

        membership = None
        started = time.monotonic()
        opened = False
        tasks: list[asyncio.Task] = []
        try:
            await self.browser.accept(self.subprotocol)
            # Joined while the desktop is dialled: both are done before relay_opened.
            membership = await Membership.join(
                (self.target.group, account_group(self.target.user.pk))
            )
            opened = await self._open_upstream(membership and membership.joining)
            if opened:
                if isinstance(self.browser, DaphneBrowser) and isinstance(
                    self.upstream, TcpUpstream
                ):
                    self._connect_directly()
                else:
                    tasks.append(asyncio.create_task(self._desktop_to_browser()))
                if membership is not None:
                    tasks.append(asyncio.create_task(self._listen(membership)))
                self._start_timer()
            await self._browser_to_desktop(forward=opened)
        finally:
            if self._timer is not None:
                self._timer.cancel()
            for task in tasks:
                task.cancel()
            # One task, shielded: Daphne cancels a relay whose browser left (and again every
            # second until it ends), and the connection's record must still be closed (it holds
            # one of the desktop's viewer places), the end audited and the desktop let go of.
            wind_down = asyncio.ensure_future(
                self._wind_down(opened=opened, started=started, membership=membership)
            )
            _WINDING_DOWN.add(wind_down)
            wind_down.add_done_callback(_WINDING_DOWN.discard)
            await asyncio.shield(wind_down)

    async def _wind_down(self, *, opened: bool, started: float, membership) -> None:
        try:
            await self._settle(opened=opened, started=started)
        finally:
            if self.upstream is not None:
                await self.upstream.close()
            if membership is not None:
                await membership.leave()

    async def _settle(self, *, opened: bool, started: float) -> None:
        """Close the connection's record and audit how it ended, once: after the bookkeeping
        call already made (which ran to its end even if the relay was cancelled meanwhile)."""
        outcome = None
        if self._bookkeeping is not None:
            kind, call = self._bookkeeping
            try:
                await call
                outcome = kind
            except services.RelayRefused:
                outcome = "refused"  # relay_opened refused, and closed the record itself
            except Exception:
                outcome = None  # it failed (the database): try once more below
        if opened or outcome == "opened":
            await _db(services.relay_closed)(
                target=self.target,
                origin=self.origin,
                bytes_to_browser=self.bytes_to_browser,
                bytes_to_desktop=self.bytes_to_desktop,
                duration=time.monotonic() - started,
                close_code=self.close_code or CloseCode.NORMAL,
                closed_by=self.closed_by,
            )
        elif outcome is None:
            # Ended (the browser left, the channel layer failed) before the desktop answered.
            await _db(services.relay_failed)(
                target=self.target,
                origin=self.origin,
                reason="the connection ended before the desktop answered",
            )

    async def _record(self, kind: str, function, **kwargs) -> None:
        """Make one of the connection's bookkeeping calls so that cancelling the relay cannot
        cut it short (its write happens in a thread regardless) and _settle knows its outcome."""
        call = asyncio.ensure_future(_db(function)(**kwargs))
        self._bookkeeping = (kind, call)
        await asyncio.shield(call)

    async def _open_upstream(self, joining: asyncio.Future | None) -> bool:
        """Dial the desktop and wait for its greeting, then (once the channel-layer groups are
        joined too) record the connection as opened; whether it was."""
        target = self.target
        try:
            self.upstream = await upstream_open(
                kind=target.kind,
                target=target.target,
                username=target.username,
                secret=target.secret,
                tls_verify=target.tls_verify,
            )
        except UpstreamError as exc:
            logger.warning("the relay for %s could not reach its desktop: %s", target.resource, exc)
            await self._record(
                "failed",
                services.relay_failed,
                target=target,
                origin=self.origin,
                reason=exc.reason,
            )
            await self._finish(CloseCode.UPSTREAM_FAILED, exc.reason, by="desktop")
            return False
        if joining is not None:
            # relay_opened's check holds only once a stop or sign-out after it would reach us.
            await joining
        try:
            await self._record(
                "opened",
                services.relay_opened,
                target=target,
                origin=self.origin,
                subprotocol=self.subprotocol,
            )
        except services.RelayRefused as refused:
            await self._end(refused)
            return False
        # The desktop's socket buffer decides when to stop reading from the browser.
        self.upstream.on_pause = self.browser.pause_reading
        self.upstream.on_resume = self.browser.resume_reading
        return True

    async def _desktop_failed(self, error: UpstreamError) -> None:
        """The desktop failed once connected: the viewer is told no more than that."""
        logger.info("the relay for %s lost its desktop: %s", self.target.resource, error)
        await self._finish(CloseCode.UPSTREAM_FAILED, error.reason, by="desktop")

    async def _finish(self, code: int, reason: str, *, by: str) -> None:
        """Close the browser's side (once); its disconnect then ends `run`."""
        if self.close_code is not None:
            return
        self.close_code = int(code)
        self.closed_by = by
        await self.browser.close(code, reason)

    # --- The hot path ---------------------------------------------------------------------------

    def _connect_directly(self) -> None:
        """Daphne and a TCP desktop: join the two sockets' callbacks, no task in between.

        Each chunk the desktop's socket delivers is framed and written to the browser's
        transport at once; each binary message autobahn parses is written to the desktop's
        socket at once. Flow control is the transports' own: the browser's buffer pauses and
        resumes reading from the desktop, the desktop's buffer pauses and resumes reading from
        the browser.
        """
        browser, upstream = self.browser, self.upstream

        def to_browser(data: bytes) -> None:
            self.bytes_to_browser += len(data)
            if not browser.write_now(data):
                upstream.pause_reading()

        def to_desktop(data: bytes) -> None:
            if self.close_code is None:
                self.bytes_to_desktop += len(data)
                upstream.write_now(data)

        def desktop_closed(error: UpstreamError | None) -> None:
            if error is not None:
                self._spawn(self._desktop_failed(error))
            else:
                self._spawn(self._finish(CloseCode.NORMAL, DESKTOP_CLOSED, by="desktop"))

        browser.on_drained = upstream.resume_reading
        upstream.attach(to_browser, desktop_closed)
        browser.divert(to_desktop)

    async def _browser_to_desktop(self, *, forward: bool) -> None:
        """Until the browser is gone: each binary message to the desktop, as it is."""
        receive = self.browser.receive
        write = self.upstream.write if forward else None
        while True:
            message = await receive()
            data = message.get("bytes")
            if data is not None:
                if write is not None and self.close_code is None:
                    self.bytes_to_desktop += len(data)
                    try:
                        await write(data)
                    except UpstreamError as exc:
                        await self._desktop_failed(exc)
                continue
            kind = message["type"]
            if kind == "websocket.disconnect":
                if self.close_code is None:
                    self.close_code = message.get("code", 1005)
                return
            if kind == "websocket.receive":  # a text frame
                await self._finish(CloseCode.UNSUPPORTED_DATA, "binary frames only", by="relay")

    async def _desktop_to_browser(self) -> None:
        read = self.upstream.read
        send = self.browser.send
        try:
            while True:
                data = await read()
                if not data:
                    break
                self.bytes_to_browser += len(data)
                await send(data)
        except UpstreamError as exc:
            await self._desktop_failed(exc)
            return
        await self._finish(CloseCode.NORMAL, DESKTOP_CLOSED, by="desktop")

    # --- Control: stops and sign-outs from any process, idleness, last_seen_at ------------------

    async def _listen(self, membership: Membership) -> None:
        kind = await membership.ending((SESSION_ENDED, ACCOUNT_SIGNED_OUT), who="a relay")
        if kind == SESSION_ENDED:
            await self._end(services.RelayRefused(CloseCode.SESSION_ENDED, "the session ended"))
        elif kind == ACCOUNT_SIGNED_OUT:
            await self._end(services.RelayRefused(CloseCode.SIGNED_OUT, "signed out"))

    async def _end(self, refused: services.RelayRefused) -> None:
        """The session ended or the account signed out while connected: close both sides."""
        by = "account" if refused.code == CloseCode.SIGNED_OUT else "session"
        await self._finish(refused.code, refused.reason, by=by)
        if self.upstream is not None:
            await self.upstream.close()

    async def _check(self, *, seen: bool) -> None:
        try:
            refused = await _db(services.relay_check)(target=self.target, seen=seen)
        except Exception:
            # The database is unreachable: the viewer stays (a blip must not drop every desktop
            # at once), and the next check asks again.
            _warn_check_failed()
            return
        finally:
            self._checking = False
        if refused is not None:
            await self._end(refused)

    def _start_timer(self) -> None:
        self._idle_timeout = float(settings.WORKGATE_VNC_IDLE_TIMEOUT)
        self._interval = min(SEEN_INTERVAL, self._idle_timeout / 4)
        loop = asyncio.get_running_loop()
        self._active_at = self._checked_at = loop.time()
        self._checking = False
        self._counted = 0
        self._timer = loop.call_later(self._interval, self._tick)

    def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        counted = self.bytes_to_browser + self.bytes_to_desktop
        if counted != self._counted:
            self._counted, self._active_at = counted, now
        elif now - self._active_at >= self._idle_timeout:
            self._spawn(self._finish(CloseCode.IDLE, "idle timeout", by="idle"))
            return
        # One check at a time: while the database is slow, checks wait, not pile up; one stuck
        # (a half-open database connection) is given up on after a few intervals.
        due = SEEN_INTERVAL * (STUCK_CHECKS if self._checking else 1)
        if now - self._checked_at >= due:
            seen = self._active_at > self._checked_at
            self._checked_at, self._checking = now, True
            self._spawn(self._check(seen=seen))
        self._timer = loop.call_later(self._interval, self._tick)

    def _spawn(self, coroutine) -> None:
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


_check_warned_at = -math.inf


def _warn_check_failed() -> None:
    """Log a failed check (the database unreachable) once per SEEN_INTERVAL per process, not
    once per open relay."""
    global _check_warned_at
    now = time.monotonic()
    if now - _check_warned_at >= SEEN_INTERVAL:
        _check_warned_at = now
        logger.warning("open relays could not check their sessions", exc_info=True)


relay = VncRelay()
