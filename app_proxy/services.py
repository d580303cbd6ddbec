"""Web apps through the gateway (issue 21), the control plane: app tickets, grants (the server
side of the app-session cookie), admission, byte counts, and how grants end.

- `app_ticket_issue`: the API's single-use, 60-second ticket for the caller's own ready web app
  runtime, under the same rules as a desktop ticket (vnc_proxy.services.ticket_issue).
- `app_enter`: the app origin's `/.workgate/enter?ticket=`: spends the ticket (one conditional
  UPDATE, vnc_proxy.tickets.ticket_spend), opens a grant (audited `app_session_opened`) and
  returns the cookie that names it (signed with SECRET_KEY, salted).
- `app_admit`: every request's admission, from the per-process cache (admission_cache.py) or,
  on a miss, from the database.
- `app_record_bytes`: byte counters, kept in memory and added to the grant every FLUSH_INTERVAL
  seconds and when the process hears its grant end.
- `grants_end`: the session ended or the account signed out everywhere (receivers.py, in the
  ending transaction): its grants end, each audited `app_session_closed` with its bytes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NoReturn
from urllib.parse import quote, urlsplit

from django.conf import settings
from django.core import signing
from django.db import transaction
from django.db.models import F, QuerySet
from django.db.models.functions import Greatest

from accounts.models import User
from app_proxy import admission_cache
from app_proxy.admission import (
    ENTER_PATH,
    Admission,
    AppRefused,
    AppUpstream,
    Entry,
    Mode,
)
from app_proxy.assertions import LIFETIME, NoSigningKey, assertion_for
from app_proxy.models import AppGrant, AppTicket
from app_proxy.origins import app_origin, apps_domain
from app_proxy.tickets import AppTicketToken
from audit import services as audit
from core.database import in_db_thread
from core.exceptions import APIError, Conflict, NotFound
from core.network import SYSTEM, Origin, client_is_tunnelled
from sessions_app.models import WorkspaceSession
from sessions_app.provisioners.web import DEFAULT_PORTS
from vnc_proxy import tickets
from vnc_proxy.selectors import access_runtime
from vnc_proxy.services import connect_refusal
from workspaces.selectors import workspace_granted

logger = logging.getLogger(__name__)

READY = WorkspaceSession.Status.READY
HTTP = WorkspaceSession.UpstreamKind.HTTP
COOKIE_SALT = "workgate.app_proxy.grant"
# A grant lasts as long as its session may, and never longer than this.
GRANT_MAX_AGE = timedelta(hours=12)
FLUSH_INTERVAL = 30.0  # seconds between writes of a grant's byte counters


# --- App tickets ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedAppTicket:
    ticket: str
    runtime_id: str
    mode: Mode
    expires_at: datetime

    @property
    def enter_path(self) -> str:
        """Where the browser spends it: on the app's own origin, or under its prefix."""
        query = f"?ticket={quote(self.ticket, safe='')}"
        if self.mode == "origin":
            return f"{app_origin(self.runtime_id)}{ENTER_PATH}{query}"
        return f"/apps/{self.runtime_id}{ENTER_PATH}{query}"


def app_mode(*, prefix_allowed: bool) -> Mode:
    """How this deployment reaches a workspace's app: on its own origin wherever an apps
    domain is configured, else under /apps/<runtime-id>/ if the workspace allows it."""
    if apps_domain():
        return "origin"
    if prefix_allowed:
        return "prefix"
    raise APIError(
        503,
        "Web apps have no origin of their own here: an administrator must set "
        "WORKGATE_APPS_DOMAIN (or allow this workspace under /apps/: app_path_prefix_allowed).",
        "apps_domain_unset",
    )


def app_ticket_issue(
    *, user, workspace_id: str, origin: Origin, mfa_verified: bool
) -> IssuedAppTicket:
    """A single-use ticket for the caller's own ready web app runtime `workspace_id`: the same
    404, MFA and tunnel rules as a desktop ticket, 409 `not_an_app` for a desktop runtime, 409
    `not_ready`. Refusals are audited (`app_ticket_issued`, success false)."""
    try:
        runtime = access_runtime(user, workspace_id, to_connect=True, app=True)
    except NotFound as exc:
        error = exc
        try:
            access_runtime(user, workspace_id)
        except NotFound:
            pass
        else:
            error = Conflict(
                "This runtime is a desktop, not a web app: ask for a desktop ticket "
                "(POST /api/agents/workspace/ticket).",
                "not_an_app",
            )
        _ticket_refused(user, f"runtime:{workspace_id}", workspace_id, origin=origin, error=error)
    refusal = connect_refusal(user, runtime, origin=origin, mfa_verified=mfa_verified, what="app")
    if refusal is not None:
        _ticket_refused(
            user, f"session:{runtime.id}", runtime.runtime_id, origin=origin, error=refusal
        )
    if runtime.status != READY or runtime.upstream_kind != HTTP:
        raise Conflict("The workspace is not ready yet.", "not_ready")
    mode = app_mode(prefix_allowed=bool(runtime.prefix_allowed))
    issued_at = tickets.now()
    token, claims = tickets.ticket_mint(
        user_id=user.pk,
        sign_in_epoch=user.sign_in_epoch,
        workspace_id=runtime.runtime_id,
        issued_at=issued_at,
        kind=AppTicketToken,
    )
    audit.record_created(
        AppTicket(
            jti=claims.jti,
            session=runtime,
            user=user,
            issued_at=issued_at,
            expires_at=claims.expires_at,
            client_ip=origin.ip,
        ),
        action="app_ticket_issued",
        actor=user,
        resource=f"session:{runtime.id}",
        details={
            "workspaceId": runtime.runtime_id,
            "jti": claims.jti,
            "mode": mode,
            "expires_at": claims.expires_at.isoformat(),
        },
        origin=origin,
    )
    return IssuedAppTicket(
        ticket=token, runtime_id=runtime.runtime_id, mode=mode, expires_at=claims.expires_at
    )


def _ticket_refused(user, resource: str, workspace_id: str, *, origin, error) -> NoReturn:
    with transaction.atomic():
        audit.record(
            action="app_ticket_issued",
            actor=user,
            resource=resource,
            details={"workspaceId": workspace_id, "refused": error.get_codes()},
            origin=origin,
            success=False,
        )
    raise error


def app_tickets_void(*, user) -> int:
    """Expire `user`'s app tickets not yet used (signed out everywhere); how many."""
    return tickets.tickets_unspent_void(AppTicket.objects.filter(user=user), at=tickets.now())


# --- Entering: a ticket for a cookie ----------------------------------------------------------


def grant_cookie(grant_id: str, runtime_id: str = "") -> str:
    """The app cookie's value: the grant id and the runtime it opens, signed (and timestamped:
    no cookie is believed past GRANT_MAX_AGE, the longest a grant lives)."""
    value = [grant_id, runtime_id] if runtime_id else grant_id
    return signing.dumps(value, salt=COOKIE_SALT, compress=False)


def _cookie_claims(cookie_value: str) -> tuple[str, str | None] | None:
    """(grant id, runtime id) from a cookie this gateway signed less than GRANT_MAX_AGE ago;
    the runtime id is None in a cookie from before it was signed in. None for any other."""
    try:
        value = signing.loads(cookie_value, salt=COOKIE_SALT, max_age=GRANT_MAX_AGE.total_seconds())
    except signing.BadSignature:
        return None
    if isinstance(value, str):
        return value, None
    if (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(part, str) and part for part in value)
    ):
        return value[0], value[1]
    return None


def cookie_is_signed(cookie_value: str | None, runtime_id: str | None = None) -> bool:
    """Whether an app cookie's value was signed by this gateway, not longer ago than a grant
    lives, and (given `runtime_id`) for that runtime: a signature check only, no database (the
    grant may have ended). What earns a request the app's body limit."""
    if not cookie_value:
        return False
    claims = _cookie_claims(cookie_value)
    if claims is None:
        return False
    return runtime_id is None or claims[1] in (None, runtime_id)


def grant_id_of(cookie_value: str | None) -> str:
    """The grant a cookie names; AppRefused 401 for none, or one the gateway did not sign."""
    claims = _cookie_claims(cookie_value) if cookie_value else None
    if claims is None:
        raise AppRefused(401, "app_sign_in_required", "Open this app from Workgate.")
    return claims[0]


async def app_enter(
    *, mode: Mode, runtime_id: str, ticket: str, client_ip: str | None, user_agent: str
) -> Entry:
    return await in_db_thread(enter)(
        mode=mode, runtime_id=runtime_id, ticket=ticket, client_ip=client_ip, user_agent=user_agent
    )


def enter(
    *, mode: Mode, runtime_id: str, ticket: str, client_ip: str | None, user_agent: str
) -> Entry:
    """Spend `ticket` at runtime `runtime_id`'s door (see app_enter). Outside any transaction:
    the spend commits at once, so a ticket shown twice opens one grant whatever happens
    after. Refusals of a genuine ticket are audited (`app_session_opened`, success false; a
    used or expired one the first time it is shown again)."""
    origin = Origin(ip=client_ip, user_agent=user_agent[:512])
    try:
        claims = tickets.ticket_decode(ticket, kind=AppTicketToken)
    except tickets.InvalidTicket as exc:
        raise AppRefused(401, "ticket_invalid", f"The app ticket is not valid: {exc}.") from None
    at = tickets.now()
    spent = tickets.ticket_spend(AppTicket.objects, jti=claims.jti, at=at, used_ip=client_ip)
    row = (
        AppTicket.objects.select_related("session", "user")
        .filter(jti=claims.jti, user_id=claims.user_id)
        .first()
    )
    if row is None:
        raise AppRefused(401, "ticket_invalid", "The app ticket is not valid: unknown ticket.")
    refusal = _enter_refusal(
        spent=spent, row=row, claims=claims, runtime_id=runtime_id, mode=mode, origin=origin
    )
    session, user = row.session, row.user
    if refusal is not None:
        if spent or tickets.ticket_replayed(AppTicket.objects, jti=claims.jti, at=at):
            with transaction.atomic():
                audit.record(
                    action="app_session_opened",
                    actor=user,
                    resource=f"session:{session.id}",
                    details={"workspaceId": runtime_id, "mode": mode, "refused": refusal.code},
                    origin=origin,
                    success=False,
                )
        raise refusal
    expires_at = min(
        session.started_at + timedelta(seconds=settings.WORKGATE_SESSION_MAX_AGE),
        at + GRANT_MAX_AGE,
    )
    grant = AppGrant(
        session=session,
        user=user,
        sign_in_epoch=user.sign_in_epoch,
        mode=mode,
        created_at=at,
        expires_at=expires_at,
        client_ip=client_ip,
        user_agent=origin.user_agent,
        last_seen_at=at,
    )
    with transaction.atomic():
        # Opened under the session's row lock, as its end is taken: a stop committing meanwhile
        # either comes first (and this grant is not opened) or ends this grant with the others.
        ready = WorkspaceSession.objects.select_for_update(no_key=True).filter(
            pk=session.pk, status=READY
        )
        if not ready.exists():
            raise AppRefused(404, "app_session_ended", "This app's session has ended.")
        audit.record_created(
            grant,
            action="app_session_opened",
            actor=user,
            resource=f"session:{session.id}",
            details={"workspaceId": session.runtime_id, "mode": mode, "grant": grant.id[:12]},
            origin=origin,
        )
    return Entry(
        admission=_admission(grant, session, user),
        cookie_value=grant_cookie(grant.id, session.runtime_id),
        max_age=max(1, int((expires_at - at).total_seconds())),
    )


def _enter_refusal(
    *, spent: bool, row: AppTicket, claims, runtime_id: str, mode: Mode, origin: Origin
) -> AppRefused | None:
    session, user = row.session, row.user
    if not spent:
        if row.used_at is not None:
            return AppRefused(401, "ticket_used", "This app ticket was used already.")
        return AppRefused(401, "ticket_expired", "This app ticket has expired.")
    if claims.workspace_id != runtime_id or session.runtime_id != runtime_id:
        return AppRefused(403, "app_wrong_origin", "This app ticket is for another app.")
    return _standing_refusal(session, user, epoch=claims.sign_in_epoch, mode=mode, origin=origin)


def _standing_refusal(
    session, user, *, epoch: int, mode: Mode, origin: Origin | None
) -> AppRefused | None:
    """What an entry and every admission ask of what a grant stands on: the account active and
    signed in as when the ticket was minted (`epoch`), the session ready, and the workspace
    still shared with the user, reached in the one mode its tickets name (under /apps/ only
    where it allows that and no apps domain is set), and through
    the tunnel where it asks for it (at entry, with the client's `origin`)."""
    if not user.is_active:
        return AppRefused(403, "account_disabled", "This account is disabled.")
    if epoch != user.sign_in_epoch:
        return AppRefused(403, "signed_out", "You signed out everywhere; sign in again.")
    if session.status != READY or session.upstream_kind != HTTP:
        return AppRefused(404, "app_session_ended", "This app's session has ended.")
    workspace = session.workspace
    if workspace is None or not workspace_granted(user, workspace.pk):
        return AppRefused(403, "app_not_shared", "This app is no longer shared with you.")
    if mode != _reached_in(workspace):
        return AppRefused(404, "app_not_found", "This app is not reached at this address.")
    if origin is not None and workspace.requires_netbird and not client_is_tunnelled(origin.ip):
        return AppRefused(403, "tunnel_required", "This app requires an encrypted tunnel.")
    return None


def _reached_in(workspace) -> Mode | None:
    """The one mode this deployment serves `workspace`'s app in (as its tickets say): on its
    own origin wherever an apps domain is set, never under /apps/ then; None for neither."""
    try:
        return app_mode(prefix_allowed=bool(workspace.app_path_prefix_allowed))
    except APIError:
        return None


def _admission(grant: AppGrant, session: WorkspaceSession, user: User) -> Admission:
    parts = urlsplit(session.upstream_target)
    try:
        assertion = assertion_for(user, workspace_id=session.workspace_id or "")
    except NoSigningKey:
        raise AppRefused(
            503,
            "app_signing_key_unset",
            "Apps cannot be told who is asking: WORKGATE_APP_SIGNING_KEY is not set.",
        ) from None
    return Admission(
        grant_id=grant.id,
        session_id=session.id,
        runtime_id=session.runtime_id,
        workspace_id=session.workspace_id or "",
        user_id=user.pk,
        mode=grant.mode,
        upstream=AppUpstream(
            origin=f"{parts.scheme}://{parts.netloc}",
            base_path=parts.path,
            address=session.upstream_address or "",
            port=parts.port or DEFAULT_PORTS.get(parts.scheme, 443),
            tls_verify=session.upstream_tls_verify,
            credential_header=session.upstream_username,
            credential=session.upstream_secret,
        ),
        assertion=assertion,
        requires_tunnel=bool(session.workspace is not None and session.workspace.requires_netbird),
    )


# --- Admission -----------------------------------------------------------------------------------


async def app_admit(*, mode: Mode, runtime_id: str, cookie_value: str | None) -> Admission:
    cache = admission_cache.for_this_loop()
    if cookie_value:
        admission = cache.hit(mode=mode, runtime_id=runtime_id, cookie_value=cookie_value)
        if admission is not None:
            return admission
    grant_id = grant_id_of(cookie_value)
    if cache.on_evict is None:
        cache.on_evict = _flush_soon
        cache.every(FLUSH_INTERVAL, app_bytes_flush)
    return await cache.admit(
        mode=mode,
        runtime_id=runtime_id,
        cookie_value=cookie_value,
        grant_id=grant_id,
        load=in_db_thread(admission_load),
    )


def admission_load(grant_id: str, mode: Mode, runtime_id: str) -> admission_cache.Loaded:
    """A grant's admission from the database (a cache miss), or AppRefused: 401 for a grant
    that does not exist, 403 for an ended or expired one, another app's, a disabled account,
    a sign-out everywhere since; 404 for a session no longer ready. Marks the session seen, so
    an app in use is not reaped as idle."""
    at = tickets.now()
    grant = (
        AppGrant.objects.select_related("session", "session__workspace", "user")
        .filter(pk=grant_id)
        .first()
    )
    if grant is None:
        raise AppRefused(401, "app_sign_in_required", "Open this app from Workgate.")
    session, user = grant.session, grant.user
    if session.runtime_id != runtime_id or grant.mode != mode:
        raise admission_cache.wrong_app()
    if grant.ended_at is not None or grant.expires_at <= at:
        raise AppRefused(403, "app_grant_ended", "This app session has ended; open it again.")
    refusal = _standing_refusal(session, user, epoch=grant.sign_in_epoch, mode=mode, origin=None)
    if refusal is not None:
        raise refusal
    admission = _admission(grant, session, user)
    WorkspaceSession.objects.filter(
        pk=session.pk, status__in=WorkspaceSession.LIVE, last_seen_at__lt=at
    ).update(last_seen_at=at)
    return admission_cache.Loaded(
        admission=admission,
        session_id=str(session.id),
        user_id=user.pk,
        assertion_expires_at=time.time() + LIFETIME.total_seconds(),
        grant_expires_at=grant.expires_at.timestamp(),
    )


# --- Bytes ---------------------------------------------------------------------------------------

# grant id -> [bytes to the app, bytes to the browser, time.monotonic() of the last write]
_pending: dict[str, list] = {}


async def app_record_bytes(grant_id: str, *, to_app: int, to_browser: int) -> None:
    counts = _pending.get(grant_id)
    if counts is None:
        counts = _pending[grant_id] = [0, 0, time.monotonic()]
    counts[0] += to_app
    counts[1] += to_browser
    if time.monotonic() - counts[2] >= FLUSH_INTERVAL:
        await app_bytes_flush([grant_id])


async def app_bytes_flush(grant_ids: list[str] | None = None) -> int:
    """Write the pending counters of `grant_ids` (None: of every grant); how many grants."""
    batch = {}
    now = time.monotonic()
    for grant_id in list(_pending) if grant_ids is None else grant_ids:
        counts = _pending.pop(grant_id, None)
        if counts is not None and (counts[0] or counts[1]):
            batch[grant_id] = (counts[0], counts[1])
        if counts is not None and grant_ids is not None and grant_id not in batch:
            _pending[grant_id] = [0, 0, now]
    if batch:
        await in_db_thread(grants_add_bytes)(batch)
    return len(batch)


def grants_add_bytes(batch: dict[str, tuple[int, int]]) -> None:
    at = tickets.now()
    for grant_id, (to_app, to_browser) in batch.items():
        AppGrant.objects.filter(pk=grant_id).update(
            bytes_to_app=F("bytes_to_app") + to_app,
            bytes_to_browser=F("bytes_to_browser") + to_browser,
            last_seen_at=Greatest(F("last_seen_at"), at),
        )


def _flush_soon(dropped: list[Admission]) -> None:
    """The process heard these grants end: what they still count goes to their rows now."""
    grant_ids = [admission.grant_id for admission in dropped if admission.grant_id in _pending]
    if grant_ids:
        task = asyncio.ensure_future(app_bytes_flush(grant_ids))
        task.add_done_callback(lambda done: done.cancelled() or done.exception())


# --- Ending grants -------------------------------------------------------------------------------


def grants_end(grants: QuerySet[AppGrant], *, reason: str, actor, origin: Origin = SYSTEM) -> int:
    """End the open grants among `grants` (inside the caller's transaction), each audited
    `app_session_closed` with its bytes each way as counted so far; how many. Every process
    holding one of them in its admission cache hears the end once the transaction commits
    (the session's or the account's channel-layer message)."""
    at = tickets.now()
    ended = 0
    for grant in (
        grants.filter(ended_at__isnull=True)
        .select_related("session")
        .select_for_update(of=("self",), no_key=True)
    ):
        AppGrant.objects.filter(pk=grant.pk).update(ended_at=at, end_reason=reason)
        audit.record(
            action="app_session_closed",
            actor=actor,
            resource=f"session:{grant.session_id}",
            details={
                "workspaceId": grant.session.runtime_id,
                "grant": grant.id[:12],
                "mode": grant.mode,
                "reason": reason,
                "bytes_to_app": grant.bytes_to_app,
                "bytes_to_browser": grant.bytes_to_browser,
                "duration_seconds": round((at - grant.created_at).total_seconds()),
            },
            origin=origin,
        )
        ended += 1
    return ended
