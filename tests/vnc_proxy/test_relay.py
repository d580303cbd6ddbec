"""The relay through the full ASGI application (origin check included), in process, to real
local desktops: a viewer gets the desktop only with a genuine, fresh, unused ticket for it."""

from __future__ import annotations

import asyncio

import pytest
from django.contrib.auth.models import Group

from accounts.models import User
from accounts.services import user_sign_out_everywhere
from audit.models import AuditEntry
from core.network import Origin
from sessions_app.models import WorkspaceSession
from tests.support.desktops import GEOMETRY, needs_desktops
from tests.support.rfb import AuthFailed, RfbClient
from tests.support.signin import token_for
from tests.vnc_proxy.conftest import (
    CommunicatorConnection,
    RelayClosed,
    db,
    refused_with,
    relay_communicator,
    relay_path,
)
from vnc_proxy.models import Ticket

pytestmark = [pytest.mark.django_db(transaction=True), needs_desktops]


def audit_rows(action: str) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(action=action).order_by("id"))


async def test_a_viewer_completes_rfb_with_the_ticket_password_and_gets_the_screen(
    desktop, ticket_for, user
):
    body = await db(ticket_for)(user, desktop.runtime_id)
    communicator = relay_communicator(relay_path(body), origin="http://localhost")

    connected, subprotocol = await communicator.connect(timeout=10)
    rfb = RfbClient(CommunicatorConnection(communicator))
    init = await rfb.handshake(body["vncPassword"])
    rectangles = await rfb.framebuffer_update(init.width, init.height)
    await communicator.disconnect()

    assert (connected, subprotocol) == (True, "binary")
    assert (init.width, init.height) == GEOMETRY
    assert rectangles >= 1
    connect = await db(audit_rows)("vnc_connect")
    disconnect = await db(audit_rows)("vnc_disconnect")
    assert [entry.success for entry in connect] == [True]
    assert connect[0].resource == f"session:{desktop.id}"
    assert connect[0].actor_id == user.id
    assert connect[0].user_agent == "pytest-viewer/1"
    assert connect[0].details == {
        "workspaceId": desktop.runtime_id,
        "upstream": "tcp",
        "subprotocol": "binary",
    }
    details = disconnect[0].details
    assert details["bytes_to_browser"] > 4 + 16 + 4 + 1
    assert details["bytes_to_desktop"] == 12 + 1 + 16 + 1 + 10
    assert details["closed_by"] == "browser"
    assert details["close_code"] == 1000
    assert details["duration_seconds"] >= 0
    ticket = await db(Ticket.objects.get)(session=desktop)
    assert ticket.used_at is not None


async def test_a_wrong_password_is_refused_by_the_vnc_server_itself(desktop, ticket_for, user):
    body = await db(ticket_for)(user, desktop.runtime_id)
    communicator = relay_communicator(relay_path(body))
    await communicator.connect(timeout=10)

    with pytest.raises(AuthFailed):
        await RfbClient(CommunicatorConnection(communicator)).handshake("not-it!!")
    await communicator.disconnect()

    # The relay admitted the viewer and carried the server's refusal: the RFB layer said no.
    assert [entry.success for entry in await db(audit_rows)("vnc_connect")] == [True]


# --- Refusals: before any desktop byte, with a named close code ---------------------------------


def forged(claims: dict, *, key: str | None = None) -> str:
    import jwt
    from django.conf import settings

    return jwt.encode(claims, key or settings.SECRET_KEY, algorithm="HS256")


def genuine_claims(user, runtime_id: str, **overrides) -> dict:
    import time
    import uuid

    from vnc_proxy.tickets import TICKET_AUDIENCE, TICKET_TYPE

    now = int(time.time())
    claims = {
        "token_type": TICKET_TYPE,
        "aud": TICKET_AUDIENCE,
        "jti": uuid.uuid4().hex,
        "user_id": str(user.pk),
        "workspaceId": runtime_id,
        "iat": now,
        "exp": now + 60,
    }
    claims.update(overrides)
    return {key: value for key, value in claims.items() if value is not None}


@pytest.mark.parametrize(
    "make_ticket",
    [
        pytest.param(lambda user, runtime: "", id="missing"),
        pytest.param(lambda user, runtime: "not-a-jwt", id="garbage"),
        pytest.param(
            lambda user, runtime: forged(genuine_claims(user, runtime), key="k" * 64),
            id="signed-with-another-key",
        ),
        pytest.param(
            lambda user, runtime: forged(genuine_claims(user, runtime, exp=None)), id="no-exp"
        ),
        pytest.param(
            lambda user, runtime: forged(genuine_claims(user, runtime, token_type="access")),
            id="another-token-type",
        ),
        pytest.param(
            lambda user, runtime: forged(genuine_claims(user, runtime, aud="someone-else")),
            id="another-audience",
        ),
        pytest.param(
            lambda user, runtime: forged(genuine_claims(user, runtime)),
            id="well-formed-but-never-issued",
        ),
        pytest.param(
            lambda user, runtime: token_for(user),
            id="an-access-token",
        ),
    ],
)
async def test_anything_but_an_issued_ticket_is_refused_with_4401(make_ticket, make_runtime, user):
    runtime = await db(make_runtime)(user)
    ticket = await db(make_ticket)(user, runtime.runtime_id)
    communicator = relay_communicator(
        f"/api/agents/workspace/vnc/{runtime.runtime_id}?ticket={ticket}"
    )

    code, reason = await refused_with(communicator)

    assert code == 4401
    assert reason
    assert ticket not in reason or not ticket
    assert await db(AuditEntry.objects.filter(action="vnc_connect").count)() == 0


async def test_a_used_ticket_cannot_open_a_second_connection(desktop, ticket_for, user):
    body = await db(ticket_for)(user, desktop.runtime_id)
    first = relay_communicator(relay_path(body))
    await first.connect(timeout=10)
    greeting = await CommunicatorConnection(first).recv()

    code, reason = await refused_with(relay_communicator(relay_path(body)))
    await first.disconnect()

    assert greeting.startswith(b"RFB 003.00")
    assert (code, reason) == (4401, "ticket already used")
    refusal = (await db(audit_rows)("vnc_connect"))[-1]
    assert refusal.success is False
    assert refusal.details["refused"] == "ticket already used"
    assert refusal.details["close_code"] == 4401


async def test_an_expired_ticket_is_refused_and_stays_unspent(
    desktop, ticket_for, user, monkeypatch
):
    from datetime import timedelta

    from vnc_proxy import tickets

    body = await db(ticket_for)(user, desktop.runtime_id)
    real_now = tickets.now
    monkeypatch.setattr(tickets, "now", lambda: real_now() + timedelta(seconds=61))

    code, reason = await refused_with(relay_communicator(relay_path(body)))

    assert (code, reason) == (4401, "ticket expired")
    assert await db(Ticket.objects.filter(used_at__isnull=False).count)() == 0


async def test_a_ticket_is_good_until_its_sixtieth_second(desktop, ticket_for, user, monkeypatch):
    from datetime import timedelta

    from vnc_proxy import tickets

    body = await db(ticket_for)(user, desktop.runtime_id)
    issued = await db(Ticket.objects.get)(session=desktop)
    monkeypatch.setattr(tickets, "now", lambda: issued.expires_at - timedelta(milliseconds=1))
    communicator = relay_communicator(relay_path(body))

    connected, _ = await communicator.connect(timeout=10)
    greeting = await CommunicatorConnection(communicator).recv()
    await communicator.disconnect()

    assert connected and greeting.startswith(b"RFB 003.00")
    assert issued.expires_at - issued.issued_at <= timedelta(seconds=60)
    assert issued.expires_at - issued.issued_at > timedelta(seconds=59)


async def test_a_ticket_for_one_of_your_runtimes_does_not_open_another(
    desktop, make_runtime, ticket_for, user
):
    other = await db(make_runtime)(user)
    body = await db(ticket_for)(user, desktop.runtime_id)
    path = relay_path(body).replace(desktop.runtime_id, other.runtime_id)

    code, reason = await refused_with(relay_communicator(path))

    assert (code, reason) == (4403, "ticket issued for another workspace")
    # Shown at the wrong door, the ticket is spent all the same.
    assert (code, reason) == (4403, "ticket issued for another workspace")
    again = await refused_with(relay_communicator(relay_path(body)))
    assert again == (4401, "ticket already used")


async def test_someone_elses_runtime_looks_like_no_runtime_at_all(
    make_runtime, ticket_for, user, other_user
):
    mine = await db(make_runtime)(user)
    theirs = await db(make_runtime)(other_user)
    body = await db(ticket_for)(user, mine.runtime_id)
    body_again = await db(ticket_for)(user, mine.runtime_id)

    at_theirs = await refused_with(
        relay_communicator(relay_path(body).replace(mine.runtime_id, theirs.runtime_id))
    )
    at_nothing = await refused_with(
        relay_communicator(relay_path(body_again).replace(mine.runtime_id, "wg-000000000000"))
    )

    assert at_theirs == at_nothing == (4404, "unknown workspace")


async def test_a_runtime_that_is_no_longer_ready_is_refused_with_4409(
    make_runtime, ticket_for, user
):
    runtime = await db(make_runtime)(user)
    body = await db(ticket_for)(user, runtime.runtime_id)
    await db(WorkspaceSession.objects.filter(pk=runtime.pk).update)(status="terminated")

    code, reason = await refused_with(relay_communicator(relay_path(body)))

    assert (code, reason) == (4409, "workspace not ready")


async def test_a_disabled_account_cannot_use_its_ticket(make_runtime, ticket_for, user):
    runtime = await db(make_runtime)(user)
    body = await db(ticket_for)(user, runtime.runtime_id)
    user.is_active = False
    await db(user.save)(update_fields=["is_active"])

    code, _ = await refused_with(relay_communicator(relay_path(body)))

    assert code == 4403


async def test_a_workspace_withdrawn_after_the_ticket_was_issued_is_refused(
    make_runtime, ticket_for, user
):
    runtime = await db(make_runtime)(user)
    body = await db(ticket_for)(user, runtime.runtime_id)

    def withdraw():
        runtime.workspace.groups.set([Group.objects.create(name="Auditors")])

    await db(withdraw)()

    code, reason = await refused_with(relay_communicator(relay_path(body)))

    assert (code, reason) == (4403, "workspace no longer shared")


async def test_signing_out_everywhere_voids_tickets_not_yet_used(make_runtime, ticket_for, user):
    runtime = await db(make_runtime)(user)
    body = await db(ticket_for)(user, runtime.runtime_id)
    await db(user_sign_out_everywhere)(user=user, actor=user, origin=Origin(ip="127.0.0.1"))

    code, reason = await refused_with(relay_communicator(relay_path(body)))

    assert (code, reason) == (4401, "ticket expired")
    entry = await db(AuditEntry.objects.get)(action="signed_out_everywhere")
    assert entry.details["desktop_passes_voided"] == 1  # keys naming tickets are redacted


# --- Origin and subprotocol -------------------------------------------------------------------


async def test_a_foreign_browser_origin_is_refused_before_the_ticket_is_looked_at(
    make_runtime, ticket_for, user
):
    runtime = await db(make_runtime)(user)
    body = await db(ticket_for)(user, runtime.runtime_id)
    communicator = relay_communicator(relay_path(body), origin="https://evil.example")

    connected, code = await communicator.connect(timeout=10)

    assert (connected, code) == (False, 1000)  # the handshake itself is denied (HTTP 403)
    assert await db(Ticket.objects.filter(used_at__isnull=True).count)() == 1


@pytest.mark.parametrize(
    ("origin", "subprotocols", "expected"),
    [
        (None, ["binary"], "binary"),  # a native bridge sends no Origin
        ("http://localhost:8000", ["base64", "binary"], "binary"),
        ("http://127.0.0.1", [], None),
    ],
)
async def test_allowed_origins_and_no_origin_get_through_echoing_binary(
    desktop, ticket_for, user, origin, subprotocols, expected
):
    body = await db(ticket_for)(user, desktop.runtime_id)
    communicator = relay_communicator(relay_path(body), origin=origin, subprotocols=subprotocols)

    connected, subprotocol = await communicator.connect(timeout=10)
    greeting = await CommunicatorConnection(communicator).recv()
    await communicator.disconnect()

    assert (connected, subprotocol) == (True, expected)
    assert greeting.startswith(b"RFB 003.00")


# --- One ticket, one connection -----------------------------------------------------------------


async def test_of_twenty_simultaneous_uses_of_one_ticket_exactly_one_gets_through(
    desktop, ticket_for, user
):
    body = await db(ticket_for)(user, desktop.runtime_id)
    communicators = [relay_communicator(relay_path(body)) for _ in range(20)]

    async def attempt(communicator):
        await communicator.connect(timeout=20)
        output = await communicator.receive_output(timeout=20)
        await communicator.disconnect()
        return output

    outputs = await asyncio.gather(*(attempt(c) for c in communicators))

    relayed = [o for o in outputs if o["type"] == "websocket.send"]
    refused = [o for o in outputs if o["type"] == "websocket.close"]
    assert len(relayed) == 1 and relayed[0]["bytes"].startswith(b"RFB 003.00")
    assert len(refused) == 19
    assert {(o["code"], o["reason"]) for o in refused} == {(4401, "ticket already used")}


# --- While connected ---------------------------------------------------------------------------


async def test_stopping_the_session_closes_its_live_relay(desktop, ticket_for, user, client_for):
    body = await db(ticket_for)(user, desktop.runtime_id)
    communicator = relay_communicator(relay_path(body))
    await communicator.connect(timeout=10)
    connection = CommunicatorConnection(communicator)
    await connection.recv()

    response = await db(client_for(user).post)(f"/api/workspaces/{desktop.workspace_id}/stop")
    with pytest.raises(RelayClosed) as closed:
        while True:
            await connection.recv()

    assert response.status_code == 200
    assert (closed.value.code, closed.value.reason) == (4410, "the session ended")
    await communicator.disconnect()
    await communicator.wait()
    details = (await db(audit_rows)("vnc_disconnect"))[-1].details
    assert (details["close_code"], details["closed_by"]) == (4410, "session")


def _sign_out_everywhere(user) -> None:
    user_sign_out_everywhere(user=user, actor=user, origin=Origin(ip="127.0.0.1"))


def _new_password(user) -> None:
    account = User.objects.get(pk=user.pk)
    account.set_password("A-brand-new-passphrase-42")
    account.save()


@pytest.mark.parametrize(
    "sign_out", [_sign_out_everywhere, _new_password], ids=["everywhere", "new password"]
)
async def test_signing_out_everywhere_closes_the_accounts_open_viewers(
    desktop, ticket_for, user, other_user, sign_out
):
    """A stolen laptop's open viewer closes at once (a new password signs out everywhere too);
    the desktop keeps running for its owner, and another account signing out closes nothing of
    this one's."""
    body = await db(ticket_for)(user, desktop.runtime_id)
    communicator = relay_communicator(relay_path(body))
    await communicator.connect(timeout=10)
    connection = CommunicatorConnection(communicator)
    rfb = RfbClient(connection)

    await db(sign_out)(other_user)
    init = await rfb.handshake(body["vncPassword"])  # still open after someone else's sign-out
    await db(sign_out)(user)
    with pytest.raises(RelayClosed) as closed:
        while True:
            await connection.recv()

    assert init.width > 0
    assert (closed.value.code, closed.value.reason) == (4411, "signed out")
    await communicator.disconnect()
    await communicator.wait()
    details = (await db(audit_rows)("vnc_disconnect"))[-1].details
    assert (details["close_code"], details["closed_by"]) == (4411, "account")
    session = await db(WorkspaceSession.objects.get)(pk=desktop.pk)
    assert session.status == "ready"


@pytest.mark.parametrize(
    "what, close",
    [
        ("ended", (4410, "the session ended", "session")),
        ("signed out", (4411, "signed out", "account")),
    ],
)
async def test_a_stop_or_sign_out_whose_message_was_lost_still_closes_the_relay(
    desktop, ticket_for, user, monkeypatch, settings, what, close
):
    """The channel layer forgot the relay (Redis restarted, say) before the session was
    stopped or the account signed out: the relay's own periodic check closes it."""
    from channels.layers import get_channel_layer

    from vnc_proxy import consumers

    monkeypatch.setattr(consumers, "SEEN_INTERVAL", 0.1)
    settings.WORKGATE_VNC_IDLE_TIMEOUT = 60
    body = await db(ticket_for)(user, desktop.runtime_id)
    communicator = relay_communicator(relay_path(body))
    await communicator.connect(timeout=10)
    connection = CommunicatorConnection(communicator)
    await connection.recv()  # the desktop's greeting: the relay is open
    layer = get_channel_layer()
    await layer.flush()  # every group membership gone, as after a Redis restart
    if what == "ended":
        await db(WorkspaceSession.objects.filter(pk=desktop.pk).update)(status="terminated")
    else:
        await db(user_sign_out_everywhere)(user=user, actor=user, origin=Origin(ip="127.0.0.1"))

    with pytest.raises(RelayClosed) as closed:
        while True:
            await connection.recv()

    code, reason, by = close
    assert (closed.value.code, closed.value.reason) == (code, reason)
    await communicator.disconnect()
    await communicator.wait()
    details = (await db(audit_rows)("vnc_disconnect"))[-1].details
    assert (details["close_code"], details["closed_by"]) == (code, by)


async def test_a_check_the_database_cannot_answer_leaves_the_viewer_connected(
    desktop, ticket_for, user, monkeypatch, settings, caplog
):
    """A database blip must not drop every open desktop at once: the failure is logged, and the
    next check asks again."""
    from django.db import OperationalError

    from vnc_proxy import consumers, services

    monkeypatch.setattr(consumers, "SEEN_INTERVAL", 0.1)
    settings.WORKGATE_VNC_IDLE_TIMEOUT = 60
    asked = []

    def unreachable(**kwargs):
        asked.append(kwargs)
        raise OperationalError("the database is restarting")

    body = await db(ticket_for)(user, desktop.runtime_id)
    communicator = relay_communicator(relay_path(body))
    await communicator.connect(timeout=10)
    rfb = RfbClient(CommunicatorConnection(communicator))
    init = await rfb.handshake(body["vncPassword"])
    monkeypatch.setattr(services, "relay_check", unreachable)
    async with asyncio.timeout(10):
        while len(asked) < 3:
            await asyncio.sleep(0.05)

    rectangles = await rfb.framebuffer_update(init.width, init.height)

    assert rectangles >= 1  # still relaying after three failed checks
    warnings = [r for r in caplog.records if r.name == "vnc_proxy.consumers"]
    assert warnings and warnings[0].getMessage() == "open relays could not check their sessions"
    assert "the database is restarting" in warnings[0].exc_text
    await communicator.disconnect()


async def test_an_idle_connection_is_closed(desktop, ticket_for, user, settings):
    settings.WORKGATE_VNC_IDLE_TIMEOUT = 0.4
    body = await db(ticket_for)(user, desktop.runtime_id)
    communicator = relay_communicator(relay_path(body))
    await communicator.connect(timeout=10)
    connection = CommunicatorConnection(communicator)
    await connection.recv()  # the greeting; then the viewer says nothing

    with pytest.raises(RelayClosed) as closed:
        while True:
            await connection.recv()

    assert (closed.value.code, closed.value.reason) == (4408, "idle timeout")
    await communicator.disconnect()


async def test_traffic_keeps_the_session_seen(desktop, ticket_for, user, monkeypatch, settings):
    from vnc_proxy import consumers

    monkeypatch.setattr(consumers, "SEEN_INTERVAL", 0.1)
    settings.WORKGATE_VNC_IDLE_TIMEOUT = 60
    body = await db(ticket_for)(user, desktop.runtime_id)
    communicator = relay_communicator(relay_path(body))
    await communicator.connect(timeout=10)
    rfb = RfbClient(CommunicatorConnection(communicator))
    init = await rfb.handshake(body["vncPassword"])
    opened_seen = (await db(WorkspaceSession.objects.get)(pk=desktop.pk)).last_seen_at

    seen = opened_seen
    for _ in range(50):
        await rfb.framebuffer_update(init.width, init.height)
        await asyncio.sleep(0.05)
        seen = (await db(WorkspaceSession.objects.get)(pk=desktop.pk)).last_seen_at
        if seen > opened_seen:
            break
    await communicator.disconnect()

    assert seen > opened_seen


async def test_a_text_frame_closes_the_connection_with_1003(desktop, ticket_for, user):
    body = await db(ticket_for)(user, desktop.runtime_id)
    communicator = relay_communicator(relay_path(body))
    await communicator.connect(timeout=10)
    connection = CommunicatorConnection(communicator)
    await connection.recv()

    await communicator.send_to(text_data="RFB 003.008\n")
    with pytest.raises(RelayClosed) as closed:
        while True:
            await connection.recv()

    assert closed.value.code == 1003
    await communicator.disconnect()


async def test_an_unreachable_desktop_closes_the_viewer_with_1011_and_no_detail(
    make_runtime, ticket_for, user, caplog
):
    """Whether the port was closed, silent or answered by something else is the server log's
    to say (test_upstream_websocket.py has each case)."""
    from tests.support.processes import free_port

    runtime = await db(make_runtime)(user, upstream_target=f"127.0.0.1:{free_port()}")
    body = await db(ticket_for)(user, runtime.runtime_id)

    code, reason = await refused_with(relay_communicator(relay_path(body)))

    assert (code, reason) == (1011, "The desktop could not be reached")
    failure = (await db(audit_rows)("vnc_connect"))[-1]
    assert failure.success is False
    assert failure.details == {
        "workspaceId": runtime.runtime_id,
        "upstream": "tcp",
        "error": reason,
    }
    assert await db(AuditEntry.objects.filter(action="vnc_disconnect").count)() == 0
    assert "ConnectionRefusedError" in caplog.text
