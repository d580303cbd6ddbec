"""The per-process cache of admissions to web apps, and how it hears that one must go.

The proxy asks for an admission on every request, so a hit must cost microseconds: the cache is
keyed by the cookie's value exactly as the browser sends it (verified once, when it was
loaded), and a hit is one dict lookup and three comparisons. An entry is kept until its
assertion has less than REFRESH_BEFORE left (then the next request loads it again from the
database, which signs a new one), or until what it stands on ends:

- While an entry is held, the process's one listening channel is in the channel-layer groups
  of its session (`session.<id>`) and of its account (`account.<pk>`). A session's end (stop,
  terminate, reaper, a disabled account) and a sign-out everywhere (or a password change) send
  their message to those groups once they commit, and the listener evicts the entries at once,
  in every process.
- If the channel layer cannot be reached (the listener lost it, or a join failed), entries are
  believed for FALLBACK_TTL seconds only.

A miss loads the admission, joins the groups, and, when it joined any group anew, loads it again:
an end that committed before the join sent its message before this channel could receive it,
and the second load sees that end. A message that arrives while a load runs keeps its result
out of the cache.

One cache per event loop (a server process has one; tests have many).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from channels.layers import get_channel_layer

from accounts.connections import ACCOUNT_SIGNED_OUT, account_group
from app_proxy.admission import Admission, AppRefused, Mode
from sessions_app.models import SESSION_ENDED, session_group

logger = logging.getLogger(__name__)

FALLBACK_TTL = 5.0  # seconds an entry is believed while the channel layer cannot be heard
REFRESH_BEFORE = 30.0  # seconds of assertion life left below which an entry is loaded again
LOADS_PER_MISS = 3
# A channel layer forgets a group membership after a day (channels_redis' group_expiry): one
# older than this is added again, and counts as new (its load is made again after it).
REJOIN_AFTER = 3600.0
# How often a miss first forgets what no longer stands (see sweep): entries past their time, the
# groups no entry needs that were joined more than REJOIN_AFTER ago, and evictions no load in
# flight can still be told of. A process serving apps for months keeps what its last hour used.
SWEEP_EVERY = 60.0


@dataclass(frozen=True)
class Loaded:
    """What a miss read from the database: the admission and what it stands on."""

    admission: Admission
    session_id: str
    user_id: int
    assertion_expires_at: float  # time.time()
    grant_expires_at: float  # time.time()


@dataclass
class _Entry:
    admission: Admission
    groups: tuple[str, str]
    fresh_until: float  # time.monotonic(): the assertion is re-signed after this
    expires_at: float  # time.time(): the grant's own end
    loaded_at: float  # time.monotonic()


Loader = Callable[[str, Mode, str], Awaitable[Loaded]]


class AdmissionCache:
    def __init__(self) -> None:
        self.entries: dict[str, _Entry] = {}  # by cookie value
        self.members: dict[str, set[str]] = {}  # group -> cookie values
        self.joined: dict[str, float] = {}  # group -> time.monotonic() it was (re)joined
        self.layer = None
        self.channel: str | None = None
        self.listener: asyncio.Task | None = None
        self.listening = False
        self.sequence = 0
        self.evicted_at: dict[str, int] = {}  # group -> sequence of its last eviction
        self.evictions = 0
        self._evicted = asyncio.Event()
        self.on_evict: Callable[[list[Admission]], None] | None = None
        self.ticker: asyncio.Task | None = None
        self.loading = 0  # misses whose loads are under way
        self.swept_at = time.monotonic()

    # --- Hits ------------------------------------------------------------------------------

    def hit(self, *, mode: Mode, runtime_id: str, cookie_value: str) -> Admission | None:
        entry = self.entries.get(cookie_value)
        if entry is None:
            return None
        now = time.monotonic()
        if (
            now >= entry.fresh_until
            or time.time() >= entry.expires_at
            or (not self.listening and now - entry.loaded_at >= FALLBACK_TTL)
        ):
            self._drop(cookie_value)
            return None
        admission = entry.admission
        if admission.runtime_id != runtime_id or admission.mode != mode:
            raise wrong_app()
        return admission

    # --- Misses ----------------------------------------------------------------------------

    async def admit(
        self, *, mode: Mode, runtime_id: str, cookie_value: str, grant_id: str, load: Loader
    ) -> Admission:
        if time.monotonic() - self.swept_at >= SWEEP_EVERY:
            self.sweep()
        await self._listen()
        loaded = None
        self.loading += 1
        try:
            for _ in range(LOADS_PER_MISS):
                sequence = self.sequence
                loaded = await load(grant_id, mode, runtime_id)
                groups = (session_group(loaded.session_id), account_group(loaded.user_id))
                joined_anew = await self._join(groups)
                if not joined_anew and not self._evicted_since(sequence, groups):
                    self._put(cookie_value, loaded, groups)
                    break
        finally:
            self.loading -= 1
        return loaded.admission

    def sweep(self) -> None:
        """Forget what nothing stands on any more. An entry whose cookie never comes back (a
        closed tab) is otherwise kept until it would be hit; a group joined for a session long
        ended is otherwise remembered for good. Such a group is forgotten, not left: the layer
        drops the membership at its own expiry, and a message to it meanwhile evicts nothing."""
        now, wall = time.monotonic(), time.time()
        for cookie, entry in list(self.entries.items()):
            if now >= entry.fresh_until or wall >= entry.expires_at:
                self._drop(cookie)
        for group, joined_at in list(self.joined.items()):
            if group not in self.members and now - joined_at >= REJOIN_AFTER:
                del self.joined[group]
        if not self.loading:
            self.evicted_at.clear()  # only a load in flight compares against it
        self.swept_at = now

    def _put(self, cookie_value: str, loaded: Loaded, groups: tuple[str, str]) -> None:
        now, wall = time.monotonic(), time.time()
        self.entries[cookie_value] = _Entry(
            admission=loaded.admission,
            groups=groups,
            fresh_until=now + (loaded.assertion_expires_at - wall) - REFRESH_BEFORE,
            expires_at=loaded.grant_expires_at,
            loaded_at=now,
        )
        for group in groups:
            self.members.setdefault(group, set()).add(cookie_value)

    def _drop(self, cookie_value: str) -> _Entry | None:
        entry = self.entries.pop(cookie_value, None)
        if entry is not None:
            for group in entry.groups:
                members = self.members.get(group)
                if members is not None:
                    members.discard(cookie_value)
                    if not members:
                        del self.members[group]
        return entry

    def _evicted_since(self, sequence: int, groups: tuple[str, ...]) -> bool:
        return any(self.evicted_at.get(group, -1) > sequence for group in groups)

    # --- Hearing ends ----------------------------------------------------------------------

    async def _listen(self) -> None:
        """Have the listening channel running (again, with a clean slate, after it failed)."""
        if self.listener is not None and not self.listener.done():
            return
        layer = get_channel_layer()
        self.listening = False
        if layer is None:
            return
        try:
            channel = await layer.new_channel()
        except Exception:
            logger.warning("the app proxy cannot reach the channel layer", exc_info=True)
            return
        # A new channel is in no group: what the old one had joined is joined again on demand,
        # and what was cached on the old one's word is loaded again.
        self.layer, self.channel, self.joined = layer, channel, {}
        self.entries.clear()
        self.members.clear()
        self.listening = True
        self.listener = listener = asyncio.ensure_future(self._receive())
        # However it ends (the layer lost, cancelled), entries are believed for FALLBACK_TTL only
        # from then on, until a miss starts listening again.
        listener.add_done_callback(
            lambda done: done is self.listener and setattr(self, "listening", False)
        )

    async def _join(self, groups: tuple[str, ...]) -> bool:
        """Join those of `groups` not joined yet (or too long ago); whether any was."""
        now = time.monotonic()
        missing = [
            group for group in groups if now - self.joined.get(group, float("-inf")) >= REJOIN_AFTER
        ]
        if not missing or not self.listening:
            return False
        try:
            await asyncio.gather(*(self.layer.group_add(group, self.channel) for group in missing))
        except Exception:
            logger.warning("the app proxy could not join %s", missing, exc_info=True)
            self.listening = False  # entries are believed for FALLBACK_TTL only
            return False
        self.joined.update(dict.fromkeys(missing, now))
        return True

    async def _receive(self) -> None:
        while True:
            try:
                message = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning(
                    "the app proxy lost its channel layer; admissions are believed for %ss",
                    FALLBACK_TTL,
                    exc_info=True,
                )
                self.listening = False
                return
            kind = message.get("type")
            if kind == SESSION_ENDED:
                session_id = message.get("session_id")
                self.evict(session_group(session_id) if session_id else None)
            elif kind == ACCOUNT_SIGNED_OUT:
                self.evict(account_group(message.get("user_id")))

    def every(self, seconds: float, job: Callable[[], Awaitable[object]]) -> None:
        """Run `job` every `seconds` while the cache lives (the byte counters' flush); a failed
        run is logged and the next one comes all the same."""
        if self.ticker is not None and not self.ticker.done():
            return

        async def tick() -> None:
            while True:
                await asyncio.sleep(seconds)
                try:
                    await job()
                except Exception:
                    logger.warning("the app proxy's periodic %s failed", job, exc_info=True)

        self.ticker = asyncio.ensure_future(tick())

    def evict(self, group: str | None) -> list[Admission]:
        """Drop every entry standing on `group` (None: every entry); what was dropped."""
        self.sequence += 1
        if group is None:
            cookies = list(self.entries)
            for known in list(self.joined):
                self.evicted_at[known] = self.sequence
        else:
            cookies = list(self.members.get(group, ()))
            self.evicted_at[group] = self.sequence
        dropped = [entry.admission for cookie in cookies if (entry := self._drop(cookie))]
        self.evictions += 1
        self._evicted.set()
        self._evicted = asyncio.Event()
        if self.on_evict is not None and dropped:
            self.on_evict(dropped)
        return dropped

    async def evicted(self, after: int) -> None:
        """Wait until more than `after` evictions happened (tests: no sleeping)."""
        while self.evictions <= after:
            await self._evicted.wait()

    async def close(self) -> None:
        for task in (self.listener, self.ticker):
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        if self.layer is not None and self.channel is not None:
            with contextlib.suppress(Exception):
                await asyncio.gather(
                    *(self.layer.group_discard(group, self.channel) for group in self.joined)
                )
        self.entries.clear()
        self.members.clear()
        self.joined.clear()
        self.listening = False


def wrong_app() -> AppRefused:
    return AppRefused(403, "app_wrong_origin", "This app-session cookie is for another app.")


_caches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AdmissionCache] = (
    weakref.WeakKeyDictionary()
)


def for_this_loop() -> AdmissionCache:
    loop = asyncio.get_running_loop()
    cache = _caches.get(loop)
    if cache is None:
        cache = _caches[loop] = AdmissionCache()
    return cache
