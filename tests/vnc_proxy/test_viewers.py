"""How many relay connections one desktop takes at once (WORKGATE_VNC_MAX_VIEWERS), counted
across server processes through the spent tickets that opened them."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta

import pytest
from django.db import connection

from audit.models import AuditEntry
from audit.selectors import audit_chain_first_break
from core.network import Origin
from tests.support.processes import wait_for
from vnc_proxy import services, tickets
from vnc_proxy.close_codes import CloseCode
from vnc_proxy.models import Ticket
from vnc_proxy.services import (
    ALIVE_FOR,
    RelayRefused,
    relay_admit,
    relay_check,
    relay_closed,
    relay_failed,
    relay_opened,
    ticket_issue,
    tickets_prune,
)

ORIGIN = Origin(ip="127.0.0.1")


def admit(user, runtime):
    """A new ticket for `runtime`, spent at the relay's door: its RelayTarget, or RelayRefused."""
    issued = ticket_issue(
        user=user, workspace_id=runtime.runtime_id, origin=ORIGIN, mfa_verified=True
    )
    return relay_admit(ticket=issued.ticket, workspace_id=runtime.runtime_id, origin=ORIGIN)


def close(target) -> None:
    relay_closed(
        target=target,
        origin=ORIGIN,
        bytes_to_browser=10,
        bytes_to_desktop=10,
        duration=1.0,
        close_code=1000,
        closed_by="browser",
    )


@pytest.fixture
def two_viewers(settings):
    settings.WORKGATE_VNC_MAX_VIEWERS = 2


@pytest.mark.django_db
def test_past_the_limit_a_viewer_is_refused_until_one_closes(user, make_runtime, two_viewers):
    runtime = make_runtime(user)
    first, _second = admit(user, runtime), admit(user, runtime)

    with pytest.raises(RelayRefused) as refused:
        admit(user, runtime)

    assert (refused.value.code, refused.value.reason) == (4429, "too many viewers")
    entry = AuditEntry.objects.filter(action="vnc_connect").get()
    assert (entry.success, entry.details["refused"]) == (False, "too many viewers")
    third = Ticket.objects.order_by("issued_at").last()
    assert third.used_at is not None and third.closed_at is not None  # spent, and not counted
    # One closes: its place is free again, in whichever process the next viewer arrives.
    close(first)
    assert admit(user, runtime).runtime_id == runtime.runtime_id
    assert audit_chain_first_break() is None


@pytest.mark.django_db
def test_a_viewer_that_could_not_reach_the_desktop_takes_no_place(user, make_runtime, settings):
    settings.WORKGATE_VNC_MAX_VIEWERS = 1
    runtime = make_runtime(user)
    relay_failed(target=admit(user, runtime), origin=ORIGIN, reason="connection refused")

    assert admit(user, runtime).runtime_id == runtime.runtime_id


@pytest.mark.django_db
def test_a_viewer_refused_once_the_desktop_answered_takes_no_place(user, make_runtime, settings):
    """The session ended between the spend and the desktop's answer: relay_opened refuses."""
    settings.WORKGATE_VNC_MAX_VIEWERS = 1
    runtime = make_runtime(user)
    target = admit(user, runtime)
    type(runtime).objects.filter(pk=runtime.pk).update(status="terminated")

    with pytest.raises(RelayRefused):
        relay_opened(target=target, origin=ORIGIN, subprotocol="binary")

    assert Ticket.objects.get(jti=target.jti).closed_at is not None
    type(runtime).objects.filter(pk=runtime.pk).update(status="ready")
    assert admit(user, runtime).runtime_id == runtime.runtime_id


@pytest.mark.django_db
def test_other_desktops_viewers_do_not_count(user, other_user, make_runtime, settings):
    settings.WORKGATE_VNC_MAX_VIEWERS = 1
    mine, theirs = make_runtime(user), make_runtime(other_user)
    admit(other_user, theirs)

    assert admit(user, mine).runtime_id == mine.runtime_id


@pytest.mark.django_db
def test_a_viewer_whose_process_died_stops_counting_one_that_checks_in_keeps_counting(
    user, make_runtime, settings
):
    """An open relay says it is open every 30 seconds (relay_check); one whose server process
    died says nothing, and after ALIVE_FOR its place is free."""
    settings.WORKGATE_VNC_MAX_VIEWERS = 1
    runtime = make_runtime(user)
    alive = admit(user, runtime)
    long_ago = tickets.now() - ALIVE_FOR - timedelta(seconds=1)
    Ticket.objects.filter(jti=alive.jti).update(alive_at=long_ago)

    assert relay_check(target=alive, seen=False) is None  # it checks in: counted again
    with pytest.raises(RelayRefused):
        admit(user, runtime)

    Ticket.objects.filter(jti=alive.jti).update(alive_at=long_ago)  # and then falls silent
    assert admit(user, runtime).runtime_id == runtime.runtime_id


@pytest.mark.django_db(transaction=True)
def test_two_viewers_let_in_at_once_cannot_both_take_the_last_place(
    user, make_runtime, settings, monkeypatch
):
    """The first has counted the places and is not yet through its admission when the second
    counts: the second sees the first's place taken (its spend committed before it counted)."""
    settings.WORKGATE_VNC_MAX_VIEWERS = 1
    runtime = make_runtime(user)
    first, second = (
        ticket_issue(user=user, workspace_id=runtime.runtime_id, origin=ORIGIN, mfa_verified=True)
        for _ in range(2)
    )
    counted, second_done = threading.Event(), threading.Event()
    count = services._admitting

    def count_then_hold(*args, **kwargs):
        full = list(count(*args, **kwargs))  # the statement that counts, run now
        if threading.current_thread().name == "first":
            counted.set()
            second_done.wait(2)  # the second, if it does not wait for us, finishes meanwhile
        return full

    monkeypatch.setattr(services, "_admitting", count_then_hold)

    def spend(issued):
        try:
            return relay_admit(ticket=issued.ticket, workspace_id=runtime.runtime_id, origin=ORIGIN)
        except RelayRefused as refused:
            return refused.code
        finally:
            connection.close()
            if threading.current_thread().name == "second":
                second_done.set()

    outcomes = {}
    threads = [
        threading.Thread(name=name, target=lambda n=name, t=t: outcomes.update({n: spend(t)}))
        for name, t in (("first", first), ("second", second))
    ]
    threads[0].start()
    assert counted.wait(10)
    threads[1].start()
    for thread in threads:
        thread.join(20)

    assert outcomes["first"].runtime_id == runtime.runtime_id
    assert outcomes["second"] == CloseCode.TOO_MANY_VIEWERS


@pytest.mark.django_db(transaction=True)
def test_two_viewers_counting_at_the_same_moment_are_never_both_let_in(
    user, make_runtime, settings, monkeypatch
):
    """No lock orders the counts: two admissions whose spends are both committed before
    either counts see each other, and both are refused rather than both taking the last
    place. Neither waited for the other to count."""
    settings.WORKGATE_VNC_MAX_VIEWERS = 1
    runtime = make_runtime(user)
    issued = [
        ticket_issue(user=user, workspace_id=runtime.runtime_id, origin=ORIGIN, mfa_verified=True)
        for _ in range(2)
    ]
    both_spent = threading.Barrier(2, timeout=10)
    count = services._admitting

    def count_together(*args, **kwargs):
        both_spent.wait()
        return list(count(*args, **kwargs))

    monkeypatch.setattr(services, "_admitting", count_together)
    outcomes = []

    def spend(ticket):
        try:
            relay_admit(ticket=ticket.ticket, workspace_id=runtime.runtime_id, origin=ORIGIN)
            outcomes.append("admitted")
        except RelayRefused as refused:
            outcomes.append(refused.code)
        finally:
            connection.close()

    threads = [threading.Thread(target=spend, args=(ticket,)) for ticket in issued]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)

    assert outcomes == [CloseCode.TOO_MANY_VIEWERS] * 2
    assert not Ticket.objects.filter(closed_at__isnull=True).exists()  # no place left taken
    assert AuditEntry.objects.filter(action="vnc_connect", success=False).count() == 2
    assert audit_chain_first_break() is None


@pytest.mark.django_db
def test_the_reaper_keeps_the_tickets_of_open_connections_only(user, make_runtime):
    runtime = make_runtime(user)
    open_, closed, died = (admit(user, runtime) for _ in range(3))
    close(closed)
    now = tickets.now()
    Ticket.objects.filter(jti=died.jti).update(alive_at=now - ALIVE_FOR)
    ticket_issue(user=user, workspace_id=runtime.runtime_id, origin=ORIGIN, mfa_verified=True)

    assert tickets_prune(now=now) == 2
    kept = dict(Ticket.objects.values_list("jti", "used_at"))
    assert kept.pop(open_.jti) is not None
    assert list(kept.values()) == [None]  # the unused one, still good for its minute


@pytest.mark.django_db(transaction=True)
async def test_a_browser_that_leaves_before_the_desktop_answers_frees_its_place(
    user, make_runtime, ticket_for, settings
):
    """The desktop is slow to greet and the browser gives up: the relay's task is cancelled,
    yet the connection's record is closed (its viewer place free at once) and audited."""
    from tests.vnc_proxy.conftest import db, relay_communicator, relay_path

    settings.WORKGATE_VNC_MAX_VIEWERS = 1
    silent = await asyncio.start_server(lambda _r, _w: None, "127.0.0.1", 0)
    target = f"127.0.0.1:{silent.sockets[0].getsockname()[1]}"
    runtime = await db(make_runtime)(user, upstream_target=target)
    communicator = relay_communicator(relay_path(await db(ticket_for)(user, runtime.runtime_id)))

    connected, _ = await communicator.connect(timeout=10)
    await communicator.disconnect(timeout=0.5)  # the relay is still waiting: it is cancelled

    assert connected
    [spent] = await db(lambda: list(Ticket.objects.all()))()
    assert spent.closed_at is not None
    entries = await db(lambda: list(AuditEntry.objects.filter(action="vnc_connect")))()
    assert [(entry.success, entry.details["error"]) for entry in entries] == [
        (False, "the connection ended before the desktop answered")
    ]
    silent.close()


@pytest.mark.django_db(transaction=True)
async def test_a_browser_that_leaves_while_the_connection_is_recorded_is_recorded_once(
    user, make_runtime, ticket_for, monkeypatch
):
    """Cancelled while relay_opened is writing (in its thread, which finishes regardless): the
    connection is audited as opened and then closed, never also as failed."""
    import time as clock

    from tests.vnc_proxy.conftest import db, relay_communicator, relay_path

    async def greet(_reader, writer):
        writer.write(b"RFB 003.008\n")

    desktop = await asyncio.start_server(greet, "127.0.0.1", 0)
    opened = services.relay_opened

    def slow_opened(**kwargs):
        clock.sleep(1.0)
        return opened(**kwargs)

    monkeypatch.setattr(services, "relay_opened", slow_opened)
    target = f"127.0.0.1:{desktop.sockets[0].getsockname()[1]}"
    runtime = await db(make_runtime)(user, upstream_target=target)
    communicator = relay_communicator(relay_path(await db(ticket_for)(user, runtime.runtime_id)))

    assert (await communicator.connect(timeout=10))[0]
    await communicator.disconnect(timeout=0.3)  # relay_opened is still writing

    actions = await db(
        lambda: list(
            AuditEntry.objects.filter(action__startswith="vnc_")
            .order_by("id")
            .values_list("action", "success")
        )
    )()
    assert actions == [("vnc_connect", True), ("vnc_disconnect", True)]
    assert (await db(Ticket.objects.get)()).closed_at is not None
    desktop.close()


@pytest.mark.django_db(transaction=True)
async def test_a_relay_stuck_on_the_channel_layer_still_frees_its_place_when_cancelled(
    user, make_runtime, ticket_for, monkeypatch
):
    """Redis hangs: joining the groups never returns, and neither does leaving them. The
    desktop is dialled meanwhile and greets, but the connection is not opened until the groups
    are joined (a stop sent then would be missed): nothing reaches the browser, and the
    cancelled relay still closes its record and audits; leaving is given up after a while."""
    from core import groups
    from tests.vnc_proxy.conftest import db, relay_communicator, relay_path

    class HungLayer:
        async def new_channel(self):
            return "relay.hung"

        async def group_add(self, group, channel):
            await asyncio.sleep(3600)

        group_discard = group_add

    dialled = asyncio.Event()

    async def greet(_reader, writer):
        writer.write(b"RFB 003.008\n")
        dialled.set()

    desktop = await asyncio.start_server(greet, "127.0.0.1", 0)
    monkeypatch.setattr(groups, "get_channel_layer", HungLayer)
    monkeypatch.setattr(groups, "LEAVE_TIMEOUT", 0.2)
    target = f"127.0.0.1:{desktop.sockets[0].getsockname()[1]}"
    runtime = await db(make_runtime)(user, upstream_target=target)
    communicator = relay_communicator(relay_path(await db(ticket_for)(user, runtime.runtime_id)))

    assert (await communicator.connect(timeout=10))[0]
    await asyncio.wait_for(dialled.wait(), 10)  # dialled while the groups are being joined
    assert await communicator.receive_nothing(timeout=0.3)
    await communicator.disconnect(timeout=0.3)
    desktop.close()

    assert (await db(Ticket.objects.get)()).closed_at is not None
    [entry] = await db(lambda: list(AuditEntry.objects.filter(action="vnc_connect")))()
    assert (entry.success, entry.details["error"]) == (
        False,
        "the connection ended before the desktop answered",
    )


@pytest.mark.django_db(transaction=True)  # as the relay runs: outside any transaction
def test_an_opening_and_its_close_cost_few_statements(
    user, make_runtime, django_assert_max_num_queries
):
    """What one relay connection asks the database, besides taking a pooled connection: the
    spend and one query at the door; the check and the entry when the desktop answers (the
    session's sighting only when it is older than SEEN_AGAIN_AFTER); the entry that closes it.
    Each is a statement of its own, committed as it ends (no BEGIN and COMMIT round trips)."""
    runtime = make_runtime(user)
    issued = ticket_issue(
        user=user, workspace_id=runtime.runtime_id, origin=ORIGIN, mfa_verified=True
    )

    with django_assert_max_num_queries(2):
        target = relay_admit(ticket=issued.ticket, workspace_id=runtime.runtime_id, origin=ORIGIN)
    with django_assert_max_num_queries(3):
        relay_opened(target=target, origin=ORIGIN, subprotocol="binary")
    with django_assert_max_num_queries(1):
        relay_closed(
            target=target,
            origin=ORIGIN,
            bytes_to_browser=12,
            bytes_to_desktop=0,
            duration=0.2,
            close_code=1000,
            closed_by="browser",
        )

    assert Ticket.objects.get(jti=target.jti).closed_at is not None
    assert list(
        AuditEntry.objects.filter(resource=target.resource)
        .order_by("id")
        .values_list("action", "success")
    ) == [("ticket_issued", True), ("vnc_connect", True), ("vnc_disconnect", True)]
    assert audit_chain_first_break() is None


@pytest.mark.django_db
def test_viewers_opening_a_desktop_together_mark_it_seen_once(user, make_runtime, monkeypatch):
    from sessions_app.models import WorkspaceSession

    runtime = make_runtime(user)
    start = tickets.now() - timedelta(seconds=10)  # tickets are not accepted before their issue
    WorkspaceSession.objects.filter(pk=runtime.pk).update(last_seen_at=start - timedelta(hours=1))
    clock = [start]
    monkeypatch.setattr(tickets, "now", lambda: clock[0])

    def open_one():
        target = admit(user, runtime)
        relay_opened(target=target, origin=ORIGIN, subprotocol=None)

    def seen():
        return WorkspaceSession.objects.get(pk=runtime.pk).last_seen_at

    open_one()
    assert seen() == start  # an hour old: written
    clock[0] = start + timedelta(milliseconds=500)
    open_one()
    assert seen() == start  # half a second old: left as it is
    clock[0] = start + services.SEEN_AGAIN_AFTER + timedelta(milliseconds=1)
    open_one()
    assert seen() == clock[0]


@pytest.mark.django_db
def test_a_refused_opening_closes_its_record_and_audits_in_one_write(user, make_runtime):
    from sessions_app.models import WorkspaceSession

    runtime = make_runtime(user)
    target = admit(user, runtime)
    WorkspaceSession.objects.filter(pk=runtime.pk).update(status=WorkspaceSession.Status.TERMINATED)

    with pytest.raises(RelayRefused) as refused:
        relay_opened(target=target, origin=ORIGIN, subprotocol=None)

    assert refused.value.code == CloseCode.NOT_READY
    assert Ticket.objects.get(jti=target.jti).closed_at is not None
    entry = AuditEntry.objects.filter(resource=target.resource).latest("id")
    assert (entry.action, entry.success, entry.details["refused"]) == (
        "vnc_connect",
        False,
        "workspace not ready",
    )


def _a_row_lock_is_awaited() -> bool:
    """Whether some transaction waits for a row another one holds."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE NOT granted AND locktype = 'transactionid'"
        )
        return cursor.fetchone()[0] > 0


@pytest.mark.skipif("connection.vendor != 'postgresql'")
@pytest.mark.django_db(transaction=True)
def test_a_close_waiting_for_its_ticket_row_holds_up_no_other_audited_write(user, make_runtime):
    """The close's one statement takes the ticket row's lock before the audit chain's, as every
    other writer does (a row, then the chain): while the row is held elsewhere, the close waits
    without the chain's lock, and an unrelated audited write (a sign-in) goes through."""
    from django.db import DatabaseError, transaction

    from audit import services as audit

    target = admit(user, make_runtime(user))
    holding, release = threading.Event(), threading.Event()
    outcome = {}

    def hold_the_row():
        try:
            with transaction.atomic():
                Ticket.objects.filter(jti=target.jti).update(replayed_at=tickets.now())
                holding.set()
                release.wait(10)
        finally:
            connection.close()

    def close_it():
        try:
            close(target)
            outcome["closed"] = True
        finally:
            connection.close()

    def unrelated():
        try:
            with connection.cursor() as cursor:
                cursor.execute("SET lock_timeout = '1500ms'")
            try:
                audit.record(action="login")
                outcome["unrelated"] = "written"
            except DatabaseError as exc:
                outcome["unrelated"] = type(exc).__name__
            with connection.cursor() as cursor:  # a pooled connection keeps no setting of ours
                cursor.execute("RESET lock_timeout")
        finally:
            connection.close()

    holder = threading.Thread(target=hold_the_row)
    holder.start()
    assert holding.wait(5)
    closer = threading.Thread(target=close_it)
    closer.start()
    wait_for(_a_row_lock_is_awaited, 5)  # the close waits on the row
    writer = threading.Thread(target=unrelated)
    writer.start()
    writer.join(10)
    release.set()
    holder.join(10)
    closer.join(10)

    assert outcome == {"unrelated": "written", "closed": True}
    assert Ticket.objects.get(jti=target.jti).closed_at is not None
    assert AuditEntry.objects.filter(action="vnc_disconnect", resource=target.resource).exists()
    assert audit_chain_first_break() is None


@pytest.mark.skipif("connection.vendor != 'postgresql'")
@pytest.mark.django_db(transaction=True)
def test_a_replay_of_a_ticket_while_its_connection_closes_loses_neither_entry(
    user, make_runtime, monkeypatch
):
    """The replay's refusal marks the ticket (its row) and then appends; the close appends after
    closing that row: both wait their turn on the row, neither deadlocks the other."""
    runtime = make_runtime(user)
    issued = ticket_issue(
        user=user, workspace_id=runtime.runtime_id, origin=ORIGIN, mfa_verified=True
    )
    target = relay_admit(ticket=issued.ticket, workspace_id=runtime.runtime_id, origin=ORIGIN)
    marked, closing = threading.Event(), threading.Event()
    first_replay = services._first_replay

    def mark_then_wait(jti, at):
        result = first_replay(jti, at)
        marked.set()
        closing.wait(5)  # as if queued on the chain behind other writers
        return result

    monkeypatch.setattr(services, "_first_replay", mark_then_wait)
    outcomes = {}

    def replay():
        try:
            relay_admit(ticket=issued.ticket, workspace_id=runtime.runtime_id, origin=ORIGIN)
        except RelayRefused as refused:
            outcomes["replay"] = refused.reason
        finally:
            connection.close()

    def close_it():
        try:
            close(target)
            outcomes["close"] = "closed"
        finally:
            connection.close()

    replayer = threading.Thread(target=replay)
    replayer.start()
    assert marked.wait(5)
    closer = threading.Thread(target=close_it)
    closer.start()
    wait_for(_a_row_lock_is_awaited, 5)  # the close waits on the row the replay marked
    closing.set()
    replayer.join(20)
    closer.join(20)

    assert outcomes == {"replay": "ticket already used", "close": "closed"}
    assert Ticket.objects.get(jti=target.jti).closed_at is not None
    actions = list(
        AuditEntry.objects.filter(resource=target.resource).values_list("action", "success")
    )
    assert ("vnc_disconnect", True) in actions and ("vnc_connect", False) in actions
    assert audit_chain_first_break() is None
