"""Desktop tickets and the relay's bookkeeping: every write of the vnc_proxy app.

The relay consumer calls these on its database threads (core.database), three times per connection
(admission, opening, closing) and at most every 30 seconds in between; never per frame.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NoReturn

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, F, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce

from accounts.models import User
from accounts.selectors import mfa_required_for
from audit import services as audit
from core.exceptions import Conflict, Forbidden, NotFound
from core.network import Origin, client_is_tunnelled
from core.queries import CompiledQuery
from sessions_app.models import WorkspaceSession
from sessions_app.provisioners import local_desktop
from sessions_app.services import EndReason, session_terminate
from vnc_proxy import tickets
from vnc_proxy.close_codes import CloseCode
from vnc_proxy.models import Ticket
from vnc_proxy.selectors import access_runtime, runtime_get
from workspaces.selectors import usable_by

READY = WorkspaceSession.Status.READY


# --- Tickets -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedTicket:
    ticket: str
    workspace_id: str
    rfb_password: str
    expires_in: int


def ticket_issue(*, user, workspace_id: str, origin: Origin, mfa_verified: bool) -> IssuedTicket:
    """A single-use ticket for the caller's own ready runtime `workspace_id` (404, 409).

    A desktop is as well guarded as its launch: where the launch needs a sign-in verified with
    a one-time code, so does every connection (403 `mfa_required`), and a workspace that may be
    launched only through the encrypted tunnel is connected to only through it (403
    `tunnel_required`): a token or a browser session from a sign-in without the code, or from
    before two-step sign-in was turned on, or used from outside the tunnel, opens no desktop
    that was launched with it. Refusals are audited, a runtime that is not the caller's too."""
    try:
        runtime = access_runtime(user, workspace_id, to_connect=True)
    except NotFound as exc:
        error = exc
        if _is_app_runtime(user, workspace_id):
            error = Conflict(
                "This runtime is a web app, not a desktop: ask for an app ticket "
                "(POST /api/agents/workspace/app-ticket).",
                "not_a_desktop",
            )
        _ticket_refused(user, f"runtime:{workspace_id}", workspace_id, origin=origin, error=error)
    refusal = connect_refusal(
        user, runtime, origin=origin, mfa_verified=mfa_verified, what="desktop"
    ) or local_desktop.refusal_for(
        # As its launch: an account no longer a superuser (or a server that withdrew the
        # opt-in) gets no new connection to a shell on the gateway's host.
        user,
        provisioner=runtime.provisioner,
    )
    if refusal is not None:
        _ticket_refused(
            user, f"session:{runtime.id}", runtime.runtime_id, origin=origin, error=refusal
        )
    if runtime.status != READY or not runtime.upstream_kind:
        raise Conflict("The workspace is not ready yet.", "not_ready")
    issued_at = tickets.now()
    token, claims = tickets.ticket_mint(
        user_id=user.pk,
        # As the request's credentials were checked: a sign-out committing from here on is
        # seen at the relay, whether or not its void finds this ticket's row.
        sign_in_epoch=user.sign_in_epoch,
        workspace_id=runtime.runtime_id,
        issued_at=issued_at,
    )
    audit.record_created(
        Ticket(
            jti=claims.jti,
            session=runtime,
            user=user,
            issued_at=issued_at,
            expires_at=claims.expires_at,
            client_ip=origin.ip,
        ),
        action="ticket_issued",
        actor=user,
        resource=f"session:{runtime.id}",
        details={
            "workspaceId": runtime.runtime_id,
            "jti": claims.jti,
            "expires_at": claims.expires_at.isoformat(),
        },
        origin=origin,
    )
    return IssuedTicket(
        ticket=token,
        workspace_id=runtime.runtime_id,
        rfb_password=runtime.rfb_password,
        expires_in=tickets.TICKET_TTL_SECONDS,
    )


def connect_refusal(
    user, runtime, *, origin: Origin, mfa_verified: bool, what: str
) -> Forbidden | None:
    """Why `user` may not connect to `runtime` (a desktop or an app, as `what` says) from
    `origin`, or None: the tunnel its workspace requires, or the one-time code its launch
    needed. The one rule for desktop and app tickets alike."""
    if runtime.requires_tunnel and not client_is_tunnelled(origin.ip):
        return Forbidden(
            f"This {what} requires an encrypted tunnel: connect through NetBird and try again.",
            "tunnel_required",
        )
    if mfa_required_for(user, mfa_enabled=runtime.owner_mfa_enabled) and not mfa_verified:
        return Forbidden(
            f"Connecting to {'an' if what[0] in 'aeiou' else 'a'} {what} requires a sign-in "
            "verified with a one-time code.",
            "mfa_required",
        )
    return None


def _is_app_runtime(user, workspace_id: str) -> bool:
    try:
        access_runtime(user, workspace_id, app=True)
    except NotFound:
        return False
    return True


def _ticket_refused(user, resource: str, workspace_id: str, *, origin, error) -> NoReturn:
    with transaction.atomic():
        audit.record(
            action="ticket_issued",
            actor=user,
            resource=resource,
            details={"workspaceId": workspace_id, "refused": error.get_codes()},
            origin=origin,
            success=False,
        )
    raise error


def tickets_prune(*, now: datetime | None = None) -> int:
    """Delete tickets that can never open a connection again (expired unused) and those of
    connections that closed or whose process died; how many. A used ticket whose connection
    is open stays: it counts that connection among its desktop's viewers."""
    now = now or tickets.now()
    unused_expired = Q(used_at__isnull=True, expires_at__lte=now)
    connection_over = Q(used_at__isnull=False) & (
        Q(closed_at__isnull=False) | Q(alive_at__isnull=True) | Q(alive_at__lte=now - ALIVE_FOR)
    )
    deleted, _ = Ticket.objects.filter(unused_expired | connection_over).delete()
    return deleted


def tickets_void(*, user) -> int:
    """Expire `user`'s tickets not yet used (the account was signed out everywhere); how many.
    The relay's single conditional UPDATE then refuses them as expired, even one that read its
    clock before this ran (they expire as of their issue)."""
    return tickets.tickets_unspent_void(Ticket.objects.filter(user=user), at=tickets.now())


# --- The relay -----------------------------------------------------------------------------------


class RelayRefused(Exception):
    def __init__(self, code: CloseCode, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class RelayTarget:
    """What an admitted connection relays to. Holds the upstream secret in memory only."""

    session_id: uuid.UUID
    runtime_id: str
    jti: str  # the spent ticket, the connection's record
    user: object
    group: str
    kind: str
    target: str
    username: str
    secret: str
    tls_verify: bool

    @property
    def resource(self) -> str:
        return f"session:{self.session_id}"


def relay_admit(*, ticket: str, workspace_id: str, origin: Origin) -> RelayTarget:
    """Use `ticket` to open the relay to `workspace_id`, or raise RelayRefused. Called outside
    any transaction (the relay's _db), so that each statement commits as it ends.

    The ticket is spent by one conditional UPDATE before anything else is decided, so of any
    number of simultaneous attempts (in any number of processes) exactly one gets past it, and a
    ticket shown at the wrong door is spent too. The spend commits at once, and from then on
    the connection holds one of its desktop's viewer places (_admission's count) until a refusal
    closes its record. Refusals of a genuine ticket are audited in the transaction that closes
    the record (one that was used or expired already, the first time it is shown again).
    """
    try:
        claims = tickets.ticket_decode(ticket)
    except tickets.InvalidTicket as exc:
        raise RelayRefused(CloseCode.TICKET_INVALID, str(exc)) from None
    at = tickets.now()
    spent = tickets.ticket_spend(
        Ticket.objects, jti=claims.jti, at=at, used_ip=origin.ip, alive_at=at
    )
    row = next(
        iter(_admitting(jti=claims.jti, user_id=claims.user_id, alive_after=at - ALIVE_FOR)), None
    )
    user = _account_of(row) if row is not None else None
    refusal = _refusal(
        spent=bool(spent),
        row=row,
        user=user,
        claims=claims,
        workspace_id=workspace_id,
        origin=origin,
    )
    if spent and refusal is None and row.other_viewers >= settings.WORKGATE_VNC_MAX_VIEWERS:
        refusal = RelayRefused(CloseCode.TOO_MANY_VIEWERS, "too many viewers")
    if refusal is not None:
        if row is not None:
            with transaction.atomic():
                if spent:
                    _open_record(claims.jti).update(closed_at=at)
                if spent or _first_replay(claims.jti, at):
                    audit.record(
                        action="vnc_connect",
                        actor=user,
                        resource=f"session:{row.id}",
                        details={
                            "workspaceId": workspace_id,
                            "refused": refusal.reason,
                            "close_code": int(refusal.code),
                        },
                        origin=origin,
                        success=False,
                    )
        raise refusal
    return RelayTarget(
        session_id=row.id,
        runtime_id=row.runtime_id,
        jti=claims.jti,
        user=user,
        group=row.group_name,
        kind=row.upstream_kind,
        target=row.upstream_target,
        username=row.upstream_username,
        secret=row.upstream_secret,
        tls_verify=row.upstream_tls_verify,
    )


# An open relay says so every 30 seconds (relay_check); a connection silent for this long is
# taken for one whose process died (four intervals may pass while a check is stuck).
ALIVE_FOR = timedelta(seconds=150)


# An opening within this long of its desktop's last sighting does not write it again: viewers
# opening a desktop together mark it seen once. Far below any idle timeout.
SEEN_AGAIN_AFTER = timedelta(seconds=1)


def _admission(jti: str, user_id: int, alive_after: datetime) -> QuerySet[WorkspaceSession]:
    """The session that ticket `jti` opens, with what its admission decides on: the ticket's
    account and use (`ticket_user_id`, `ticket_used_at`), that account's state (`account_*`),
    whether the workspace is still shared with it (`granted`, see usable_by), whether it is
    reached only through the tunnel (`requires_tunnel`), and how many relay connections of the
    desktop are open in any process besides the ticket's own (`other_viewers`).

    Asked after the ticket's spend has committed, and without a lock: two viewers let in at
    once cannot both take the last place, because whichever committed its spend second counts
    the other (each count is a statement of its own, which sees every spend committed before
    it). At the limit both may count each other and both be refused, never both let in. A lock
    on the session's row would make every opening of the desktop wait for the one before it."""
    others = Ticket.objects.filter(
        session_id=OuterRef("id"),
        used_at__isnull=False,
        closed_at__isnull=True,
        alive_at__gt=alive_after,
    ).exclude(jti=jti)
    table = WorkspaceSession._meta.db_table
    return (
        WorkspaceSession.objects.filter(tickets__jti=jti)
        .only(  # what RelayTarget and _refusal read, no more (each secret is decrypted as read)
            "id",
            "workspace_id",
            "runtime_id",
            "status",
            "upstream_kind",
            "upstream_target",
            "upstream_username",
            "upstream_secret",
            "upstream_tls_verify",
        )
        .annotate(
            ticket_user_id=F("tickets__user_id"),
            ticket_used_at=F("tickets__used_at"),
            account_active=F("tickets__user__is_active"),
            account_epoch=F("tickets__user__sign_in_epoch"),
            account_email=F("tickets__user__email"),
            requires_tunnel=F("workspace__requires_netbird"),
            granted=usable_by(User(pk=user_id), workspace_column=(table, "workspace_id")),
            other_viewers=Coalesce(
                Subquery(others.values("session_id").annotate(count=Count("*")).values("count")),
                0,
            ),
        )
        .order_by()[:1]
    )


# Every opening asks this: compiled once (core/queries.py).
_admitting = CompiledQuery(
    _admission,
    jti="\x00stand-in",
    user_id=-7_000_000_001,
    alive_after=datetime(1901, 2, 3, 4, 5, 6, 789012, tzinfo=UTC),
)


def _account_of(row: WorkspaceSession) -> User:
    """The ticket's account as _admission read it: only those columns (any other would be
    read from the database if asked for)."""
    read = {
        "id": row.ticket_user_id,
        "email": row.account_email,
        "is_active": bool(row.account_active),
        "sign_in_epoch": row.account_epoch,
    }
    # from_db takes the values in the model's column order.
    names = [field.attname for field in User._meta.concrete_fields if field.attname in read]
    return User.from_db(connection.alias, names, [read[name] for name in names])


def _open_record(jti: str) -> QuerySet[Ticket]:
    """The record of the connection ticket `jti` opened, while it is open."""
    return Ticket.objects.filter(jti=jti, closed_at__isnull=True)


def _first_replay(jti: str, at: datetime) -> bool:
    """A ticket shown again after it was used or expired is audited the first time only, so
    that replaying a captured ticket cannot grow the audit log without bound."""
    return tickets.ticket_replayed(Ticket.objects, jti=jti, at=at)


def _refusal(
    *,
    spent: bool,
    row: WorkspaceSession | None,
    user: User | None,
    claims,
    workspace_id: str,
    origin: Origin,
) -> RelayRefused | None:
    if row is None or row.ticket_user_id != claims.user_id:
        return RelayRefused(CloseCode.TICKET_INVALID, "unknown ticket")
    if not spent:
        reason = "ticket already used" if row.ticket_used_at is not None else "ticket expired"
        return RelayRefused(CloseCode.TICKET_INVALID, reason)
    if not user.is_active:
        return RelayRefused(CloseCode.FORBIDDEN, "account disabled")
    if claims.sign_in_epoch != user.sign_in_epoch:
        return RelayRefused(CloseCode.SIGNED_OUT, "signed out")
    if workspace_id != row.runtime_id or workspace_id != claims.workspace_id:
        # The same answer as the API's 404 unless the door is the ticket holder's own.
        try:
            access_runtime(user, workspace_id)
        except NotFound:
            return RelayRefused(CloseCode.UNKNOWN_WORKSPACE, "unknown workspace")
        return RelayRefused(CloseCode.FORBIDDEN, "ticket issued for another workspace")
    if row.requires_tunnel and not client_is_tunnelled(origin.ip):
        # The ticket was asked for through the tunnel (ticket_issue), but is used from outside.
        return RelayRefused(CloseCode.FORBIDDEN, "tunnel required")
    if row.status != READY or not row.upstream_kind:
        return RelayRefused(CloseCode.NOT_READY, "workspace not ready")
    if not row.granted:
        # Withdrawn from the user's groups since the ticket was issued.
        return RelayRefused(CloseCode.FORBIDDEN, "workspace no longer shared")
    return None


def relay_opened(*, target: RelayTarget, origin: Origin, subprotocol: str | None) -> None:
    """The desktop answered: audit the connection if the session is still ready and the
    account still signed in as when the ticket was spent; else audit and raise RelayRefused.

    Called after the relay joined the session's and the account's channel-layer groups, so a
    stop or a sign-out that this check misses is one whose message the relay will receive.
    Outside any transaction: the check is one statement, the entry another (see audit.record);
    a stop committed between the two is one whose message the relay receives.
    """
    at = tickets.now()
    ready, signed_in, seen_at = _relay_state(target)
    refusal = None
    if not ready:
        refusal = RelayRefused(CloseCode.NOT_READY, "workspace not ready")
    elif not signed_in:
        refusal = RelayRefused(CloseCode.SIGNED_OUT, "signed out")
    details = {
        "workspaceId": target.runtime_id,
        "upstream": target.kind,
        "subprotocol": subprotocol or "",
        **({"refused": refusal.reason} if refusal else {}),
    }
    fields = dict(
        action="vnc_connect",
        actor=target.user,
        resource=target.resource,
        details=details,
        origin=origin,
        success=refusal is None,
    )
    if refusal is not None:
        audit.record_updated(_open_record(target.jti), {"closed_at": at}, **fields)
        raise refusal
    audit.record(**fields)
    if seen_at is None or seen_at < at - SEEN_AGAIN_AFTER:
        # A desktop that several viewers open at once is marked seen once, not by each.
        relay_seen(session_id=target.session_id, at=at)


def _relay_state(target: RelayTarget) -> tuple[bool, bool, datetime | None]:
    """Whether the relay's session is still ready, whether its account is still active and
    signed in as when the ticket was spent (the same sign-in epoch), and when the session was
    last seen: one query."""
    state = next(iter(_state_of(session_id=target.session_id)), None)
    if state is None:
        return False, False, None
    signed_in = bool(state.account_active) and state.account_epoch == target.user.sign_in_epoch
    return state.status == READY, signed_in, state.last_seen_at


# Every opening and every open relay's check asks this: compiled once (core/queries.py).
_state_of = CompiledQuery(
    lambda session_id: (
        WorkspaceSession.objects.filter(pk=session_id)
        .only("status", "last_seen_at")
        .annotate(account_active=F("user__is_active"), account_epoch=F("user__sign_in_epoch"))
        .order_by()[:1]
    ),
    session_id=uuid.UUID(int=0x57_6F_72_6B_67_61_74_65),
)


def relay_failed(*, target: RelayTarget, origin: Origin, reason: str) -> None:
    """The desktop could not be reached: the ticket is spent, the attempt audited."""
    audit.record_updated(
        _open_record(target.jti),
        {"closed_at": tickets.now()},
        action="vnc_connect",
        actor=target.user,
        resource=target.resource,
        details={"workspaceId": target.runtime_id, "upstream": target.kind, "error": reason},
        origin=origin,
        success=False,
    )


def relay_check(
    *, target: RelayTarget, seen: bool, at: datetime | None = None
) -> RelayRefused | None:
    """Asked by an open relay every SEEN_INTERVAL: is its session still ready, and its account
    still signed in as when the ticket was spent? A stop or a sign-out reaches the relay at once
    through the channel layer; this holds when that message was lost (Redis restarted, the
    relay's listener failed). With `seen` (traffic went through since the last check), the
    session's last_seen_at moves on, so it is not reaped as idle."""
    ready, signed_in, _ = _relay_state(target)
    if not ready:
        return RelayRefused(CloseCode.SESSION_ENDED, "the session ended")
    if not signed_in:
        return RelayRefused(CloseCode.SIGNED_OUT, "signed out")
    at = at or tickets.now()
    _open_record(target.jti).update(alive_at=at)
    if seen:
        relay_seen(session_id=target.session_id, at=at)
    return None


def relay_seen(*, session_id: uuid.UUID, at: datetime) -> None:
    """Traffic went through: keep the session from being reaped as idle.

    Its own statement, never inside a transaction that goes on to append to the audit chain:
    the session row's lock would then be held while that append waits for the chain's lock,
    and every admission to the desktop (which locks the row to count its viewers) would queue
    behind every audited write of the whole gateway."""
    WorkspaceSession.objects.filter(
        pk=session_id, status__in=WorkspaceSession.LIVE, last_seen_at__lt=at
    ).update(last_seen_at=at)


def relay_closed(
    *,
    target: RelayTarget,
    origin: Origin,
    bytes_to_browser: int,
    bytes_to_desktop: int,
    duration: float,
    close_code: int,
    closed_by: str,
) -> None:
    at = tickets.now()
    audit.record_updated(
        _open_record(target.jti),
        {"closed_at": at},
        action="vnc_disconnect",
        actor=target.user,
        resource=target.resource,
        details={
            "workspaceId": target.runtime_id,
            "bytes_to_browser": bytes_to_browser,
            "bytes_to_desktop": bytes_to_desktop,
            "duration_seconds": round(duration, 3),
            "close_code": close_code,
            "closed_by": closed_by,
        },
        origin=origin,
    )
    if (bytes_to_browser or bytes_to_desktop) and duration > SEEN_AGAIN_AFTER.total_seconds():
        # A shorter connection's opening saw the desktop (or found it seen) just before.
        relay_seen(session_id=target.session_id, at=at)


# --- The super gate ------------------------------------------------------------------------------


def runtime_terminate(*, actor, workspace_id: str, origin: Origin) -> WorkspaceSession:
    """End anyone's live runtime (superusers only; the view checks). 404, 409 when ended."""
    runtime = runtime_get(workspace_id)
    if not runtime.is_live:
        raise Conflict("The workspace runtime has already ended.", "not_live")
    return session_terminate(
        session=runtime,
        actor=actor,
        reason=EndReason.ADMIN_TERMINATE,
        origin=origin,
        action="terminate_session",
    )
