"""Launching, stopping, terminating and reaping workspace sessions.

Every way a session ends (stop, terminate, reset, delete, reaper, a failed start) goes through
`_session_end`, which changes the row and writes the audit entry in one transaction and, once it
commits, tells the session's relay connections to close (through the channel layer, so from any
server process) and stops the provisioner's desktop. Desktops are never started or stopped
inside a database transaction.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.selectors import mfa_required_for
from audit import services as audit
from core.exceptions import APIError, Conflict, Forbidden, NotFound
from core.network import SYSTEM, Origin, client_is_tunnelled
from core.queries import queryable
from core.ratelimit import RateLimited, over_limit
from sessions_app.models import SESSION_ENDED, WorkspaceSession
from sessions_app.provisioners import (
    DesktopGone,
    ProvisionerUnavailable,
    container,
    local_desktop,
    provisioner_named,
)
from sessions_app.selectors import live_sessions_of
from sessions_app.signals import session_ended
from workspaces.models import Workspace
from workspaces.selectors import access_workspace

logger = logging.getLogger(__name__)

# How long a started desktop may take to answer its provisioner's probe (unless the provisioner
# says otherwise: `ready_timeout`).
READY_TIMEOUT_SECONDS = 15.0
PROBE_INTERVAL_SECONDS = 0.2
# Threads that wait for desktops which answer seconds after their start (containers), so that
# no request thread does; a launch past this many at once waits its turn to be marked ready.
_READINESS = ThreadPoolExecutor(max_workers=32, thread_name_prefix="workgate-ready")
# A session still starting after this long lost its launching process (a crash or a restart
# mid-start); the reaper ends it so the user's next launch starts afresh.
STARTING_ABANDONED_AFTER = timedelta(minutes=5)

Status = WorkspaceSession.Status


class EndReason:
    USER_STOP = "user_stop"
    TERMINATED = "terminated"
    ADMIN_TERMINATE = "admin_terminate"
    IDLE_TIMEOUT = "idle_timeout"
    MAX_AGE = "max_age"
    WORKSPACE_DELETED = "workspace_deleted"
    WORKSPACES_RESET = "workspaces_reset"
    START_FAILED = "start_failed"
    START_ABANDONED = "start_abandoned"
    ACCOUNT_DISABLED = "account_disabled"
    CONTAINER_EXITED = "container_exited"
    CONTAINER_GONE = "container_gone"


# --- Launch --------------------------------------------------------------------------------------


def session_launch(
    *, user, workspace_id: str, origin: Origin, mfa_verified: bool
) -> tuple[WorkspaceSession, bool]:
    """Launch `workspace_id` for `user`: (the session, whether it was created now).

    A user who already has a live session of the workspace gets that session back. Checks, in
    order: the workspace exists and is shared with the user, it can be launched, the tunnel,
    MFA, the per-user limit, the provisioner. Refusals are audited (success false) so denied
    access is visible in the log too. Every attempt first counts against the user's
    WORKGATE_LAUNCH_RATE, whoever asks (the API, the catalog page, the assistant's tool): 429,
    not audited, past it, so that no path grows the audit log without bound.
    """
    wait = over_limit(group="launch", rate=settings.WORKGATE_LAUNCH_RATE, key=f"user:{user.pk}")
    if wait is not None:
        raise RateLimited(wait=wait)
    workspace = _launchable(user, workspace_id, origin=origin)
    try:
        _check_launchable(workspace, user=user, origin=origin, mfa_verified=mfa_verified)
        existing = _live_session_of(user, workspace)
        if existing is not None:
            return existing, False
        provisioner = provisioner_named(workspace.provisioner)
        try:
            provisioner.check_available(workspace)
        except ProvisionerUnavailable as exc:
            raise APIError(503, str(exc), "provisioner_unavailable") from exc
        session, created = _session_create(
            user=user, workspace=workspace, origin=origin, mfa_verified=mfa_verified
        )
    except APIError as exc:
        if not isinstance(exc, NotFound):
            _audit_refusal(user=user, workspace_id=workspace.id, origin=origin, error=exc)
        raise
    if not created:
        return session, False
    return _session_provision(session, user=user, origin=origin), True


def _launchable(user, workspace_id: str, *, origin: Origin) -> Workspace:
    """The workspace if it exists and is shared with `user`. If not, the same 404 and the same
    audit entry either way, naming the id asked for: neither the answer nor the caller's own
    view of the log tells a workspace kept from them from one that does not exist."""
    try:
        return access_workspace(user, workspace_id)
    except NotFound as exc:
        _audit_refusal(user=user, workspace_id=str(workspace_id)[:180], origin=origin, error=exc)
        raise


def _check_launchable(workspace: Workspace, *, user, origin: Origin, mfa_verified: bool):
    if workspace.status in (Workspace.Status.STOPPED, Workspace.Status.ERROR):
        raise Conflict(
            f"Workspace is {workspace.status} and cannot be launched.", "workspace_unavailable"
        )
    if workspace.requires_netbird and not client_is_tunnelled(origin.ip):
        raise Forbidden(
            "This workspace requires an encrypted tunnel: connect through NetBird and try again.",
            "tunnel_required",
        )
    if mfa_required_for(user) and not mfa_verified:
        raise Forbidden(
            "Launching a workspace requires a sign-in verified with a one-time code.",
            "mfa_required",
        )
    refusal = local_desktop.refusal_for(user, provisioner=workspace.provisioner)
    if refusal is not None:
        raise refusal


def _audit_refusal(*, user, workspace_id: str, origin: Origin, error: APIError) -> None:
    with transaction.atomic():
        audit.record(
            action="launch_workspace",
            actor=user,
            resource=f"workspace:{workspace_id}",
            details={"refused": error.get_codes(), "status_code": error.status_code},
            origin=origin,
            success=False,
        )


def _live_session_of(user, workspace: Workspace) -> WorkspaceSession | None:
    return live_sessions_of(user).filter(workspace=workspace).first()


def _session_create(
    *, user, workspace: Workspace, origin: Origin, mfa_verified: bool
) -> tuple[WorkspaceSession, bool]:
    with transaction.atomic():
        # One user's launches queue on their own row, so the per-user limit holds under races;
        # the partial unique constraint below is the last word on one live session per workspace.
        # NO KEY: new rows referencing the user (an audit entry, a ticket) check it with FOR KEY
        # SHARE at commit, under the audit chain's lock; FOR UPDATE would make them wait for
        # this transaction while it waits for that lock (a deadlock, broken after 1 s).
        get_user_model().objects.select_for_update(no_key=True).filter(pk=user.pk).first()
        existing = _live_session_of(user, workspace)
        if existing is not None:
            return existing, False
        if live_sessions_of(user).count() >= settings.WORKGATE_MAX_SESSIONS_PER_USER:
            raise Conflict(
                f"You already have {settings.WORKGATE_MAX_SESSIONS_PER_USER} live sessions; "
                "stop one before launching another.",
                "session_limit",
            )
        now = timezone.now()
        try:
            with transaction.atomic():
                session = WorkspaceSession.objects.create(
                    user=user,
                    workspace=workspace,
                    workspace_name=workspace.name,
                    workspace_type=workspace.type,
                    status=Status.STARTING,
                    started_at=now,
                    last_seen_at=now,
                    client_ip=origin.ip,
                    user_agent=origin.user_agent[:512],
                    tunnel_status=tunnel_status_for(origin.ip),
                    mfa_verified=mfa_verified,
                    provisioner=workspace.provisioner,
                )
        except IntegrityError:
            existing = _live_session_of(user, workspace)
            if existing is not None:
                return existing, False
            if not Workspace.objects.filter(pk=workspace.pk).exists():
                raise NotFound("Workspace not found", "not_found") from None
            raise
        Workspace.objects.filter(
            pk=workspace.pk, status__in=[Workspace.Status.AVAILABLE, Workspace.Status.RUNNING]
        ).update(status=Workspace.Status.RUNNING, updated_at=now)
        audit.record(
            action="launch_workspace",
            actor=user,
            resource=f"workspace:{workspace.id}",
            details={
                "session_id": str(session.id),
                "runtime_id": session.runtime_id,
                "tunnel_status": session.tunnel_status,
                "mfa_verified": mfa_verified,
            },
            origin=origin,
        )
    return session, True


def tunnel_status_for(ip: str | None) -> str:
    """ "encrypted" when the client came through a trusted network (the NetBird overlay)."""
    return "encrypted" if client_is_tunnelled(ip) else "direct"


def _session_provision(session: WorkspaceSession, *, user, origin: Origin):
    """Start the desktop (outside any transaction), record its upstream, wait until it answers."""
    provisioner = provisioner_named(session.provisioner)
    try:
        upstream = provisioner.start(session)
    except ProvisionerUnavailable as exc:
        _start_failed(session, user=user, origin=origin, cause="provisioner_unavailable")
        raise APIError(503, str(exc), "provisioner_unavailable") from exc
    except Exception as exc:
        logger.exception(
            "provisioner %r could not start session %s", session.provisioner, session.id
        )
        _start_failed(session, user=user, origin=origin, cause="start_error")
        raise APIError(
            503, "The workspace's desktop could not be started.", "desktop_unavailable"
        ) from exc

    if upstream is not None:
        session.upstream_kind = upstream.kind
        session.upstream_target = upstream.target
        session.upstream_username = upstream.username
        session.upstream_secret = upstream.secret
        session.upstream_tls_verify = upstream.tls_verify
        session.rfb_password = upstream.rfb_password
        session.upstream_address = upstream.address or None
    recorded = WorkspaceSession.objects.filter(pk=session.pk, status=Status.STARTING).update(
        provisioner_state=session.provisioner_state,
        upstream_kind=session.upstream_kind,
        upstream_target=session.upstream_target,
        upstream_address=session.upstream_address,
        upstream_username=session.upstream_username,
        upstream_secret=session.upstream_secret,
        upstream_tls_verify=session.upstream_tls_verify,
        rfb_password=session.rfb_password,
    )
    if not recorded:
        _ended_while_starting(provisioner, session)

    answered = upstream is None or upstream.ready
    if answered or not getattr(provisioner, "readies_in_background", False):
        return _session_ready(provisioner, session, answered=answered, user=user, origin=origin)
    _READINESS.submit(_ready_in_background, provisioner, session, user=user, origin=origin)
    session.refresh_from_db()
    return session


def _session_ready(provisioner, session: WorkspaceSession, *, answered: bool, user, origin):
    """Wait until the desktop answers (unless start() saw it answer), then mark it ready; 503
    `desktop_unavailable` (the session ended, audited) when it does not in time."""
    timeout = getattr(provisioner, "ready_timeout", READY_TIMEOUT_SECONDS)
    failure = None if answered else _wait_until_ready(provisioner, session, timeout)
    if failure is not None:
        _start_failed(session, user=user, origin=origin, cause=failure)
        raise APIError(
            503, "The workspace's desktop did not answer; try again later.", "desktop_unavailable"
        )

    now = timezone.now()
    ready = WorkspaceSession.objects.filter(pk=session.pk, status=Status.STARTING).update(
        status=Status.READY, ready_at=now, last_seen_at=now
    )
    if not ready:
        _ended_while_starting(provisioner, session)
    session.refresh_from_db()
    return session


def _ready_in_background(provisioner, session: WorkspaceSession, *, user, origin: Origin):
    """_session_ready on a thread of the readiness pool, for a desktop that takes seconds to
    answer (a container's): the launch has answered `starting` already."""
    try:
        _session_ready(provisioner, session, answered=False, user=user, origin=origin)
    except APIError:
        pass  # the session ended, audited; the user sees it as `error` (or `terminated`)
    except Exception:
        logger.exception("session %s: waiting for its desktop failed", session.pk)
    finally:
        connection.close()  # this pool thread's own


def _wait_until_ready(provisioner, session: WorkspaceSession, timeout: float) -> str | None:
    """Probe until the desktop answers: None once it does, else why not (the launch_failed
    entry's cause): `desktop_exited`, or `not_answering` within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if provisioner.probe(session):
                return None
        except DesktopGone as exc:
            logger.warning("session %s: %s", session.id, exc)
            return "desktop_exited"
        except Exception:
            logger.exception("probing session %s failed", session.id)
            return "not_answering"
        if time.monotonic() >= deadline:
            return "not_answering"
        time.sleep(PROBE_INTERVAL_SECONDS)


def _ended_while_starting(provisioner, session: WorkspaceSession):
    """Someone stopped the session while its desktop started: their stop may have run before
    the desktop existed, so stop it again (stop is idempotent) and tell the launcher."""
    _stop_desktop(session)
    raise Conflict("The session ended while its desktop was starting.", "session_ended")


def _start_failed(session: WorkspaceSession, *, user, origin: Origin, cause: str) -> None:
    _session_end(
        session_id=session.pk,
        actor=user,
        reason=EndReason.START_FAILED,
        origin=origin,
        action="launch_failed",
        status=Status.ERROR,
        success=False,
        resource=f"workspace:{session.workspace_id}",
        details={"cause": cause},
    )


# --- Ending sessions --------------------------------------------------------------------------


def workspace_stop(*, user, workspace_id: str, origin: Origin) -> WorkspaceSession:
    """Stop the caller's live session of `workspace_id` (404 `no_active_session` when none),
    even of a workspace no longer shared with them. Without one, a workspace they may not see
    gets the 404 of an unknown id."""
    session = None
    if queryable(workspace_id):
        session = live_sessions_of(user).filter(workspace_id=str(workspace_id)).first()
    if session is None:
        access_workspace(user, workspace_id)
        raise NotFound("No active session for this workspace.", "no_active_session")
    session, ended = _session_end(
        session_id=session.pk,
        actor=user,
        reason=EndReason.USER_STOP,
        origin=origin,
        action="stop_workspace",
        resource=f"workspace:{session.workspace_id}",
    )
    if not ended:
        raise NotFound("No active session for this workspace.", "no_active_session")
    return session


def session_terminate(
    *,
    session: WorkspaceSession,
    actor,
    reason: str,
    origin: Origin,
    action: str = "terminate_session",
) -> WorkspaceSession:
    """End `session` (idempotent: an ended session is returned as it is, and not audited again).

    Permission is the caller's business: fetch the session with `access_session` first.
    """
    session, _ = _session_end(
        session_id=session.pk, actor=actor, reason=reason, origin=origin, action=action
    )
    return session


def sessions_terminate(*, sessions, actor, reason: str, origin: Origin) -> int:
    """End every live session among `sessions` (a queryset), oldest first; how many this call
    ended (one that a concurrent stop or the reaper ended first is not counted)."""
    ended = 0
    for session_id in (
        sessions.filter(status__in=WorkspaceSession.LIVE)
        .order_by("started_at")
        .values_list("pk", flat=True)
    ):
        _, did_end = _session_end(
            session_id=session_id,
            actor=actor,
            reason=reason,
            origin=origin,
            action="terminate_session",
        )
        ended += did_end
    return ended


def sessions_reap(*, now=None) -> int:
    """End live sessions idle longer than WORKGATE_SESSION_IDLE_TIMEOUT (since last_seen_at),
    older than WORKGATE_SESSION_MAX_AGE (since started_at), or abandoned while starting; how
    many were ended."""
    now = now or timezone.now()
    idle_since = now - timedelta(seconds=settings.WORKGATE_SESSION_IDLE_TIMEOUT)
    born_before = now - timedelta(seconds=settings.WORKGATE_SESSION_MAX_AGE)
    abandoned_before = now - STARTING_ABANDONED_AFTER

    def expiry(session: WorkspaceSession) -> str | None:
        if session.started_at < born_before:
            return EndReason.MAX_AGE
        if session.last_seen_at < idle_since:
            return EndReason.IDLE_TIMEOUT
        if session.status == Status.STARTING and session.started_at < abandoned_before:
            return EndReason.START_ABANDONED
        return None

    candidates = (
        WorkspaceSession.objects.filter(status__in=WorkspaceSession.LIVE)
        .filter(
            Q(last_seen_at__lt=idle_since)
            | Q(started_at__lt=born_before)
            | Q(status=Status.STARTING, started_at__lt=abandoned_before)
        )
        .order_by("started_at")
        .values_list("pk", flat=True)
    )
    ended = 0
    for session_id in list(candidates):
        _, did_end = _session_end(
            session_id=session_id,
            actor=None,
            reason=expiry,
            origin=SYSTEM,
            action="session_expired",
        )
        ended += did_end
    return ended


def sessions_reconcile() -> tuple[int, int]:
    """Bring container sessions and their containers into agreement, on every engine that
    answers (one that does not is reconciled once it does): a ready session whose container
    exited or is gone ends (audited as `session_lost`, with the reason and the exit code), and a
    container of this deployment that no live session owns is removed (audited as
    `container_removed`): what a crash left behind, or a stop whose engine was down then.
    (ended sessions, removed containers)."""
    if not container.engine_urls():
        return 0, 0
    # Chosen before the engines are asked, so each was ready, its container running, before
    # the survey: a session launched meanwhile is not mistaken for one whose container went.
    ready = WorkspaceSession.objects.filter(status=Status.READY, provisioner=container.NAME)
    ready = list(ready.values_list("pk", "provisioner_state"))
    seen = container.survey()
    containers = {
        engine: {item.id: item for item in items if not item.network}
        for engine, items in seen.items()
    }
    ended = 0
    ended_now = set()
    for session_id, state in ready:
        if state.get("engine") not in containers:
            continue
        observed = containers[state["engine"]].get(state.get("container"))
        if observed is not None and observed.running:
            continue
        _, did_end = _session_end(
            session_id=session_id,
            actor=None,
            reason=EndReason.CONTAINER_GONE if observed is None else EndReason.CONTAINER_EXITED,
            origin=SYSTEM,
            action="session_lost",
            details={} if observed is None else {"exit_code": observed.exit_code},
        )
        ended += did_end
        ended_now.add(str(session_id))
    # What the ends above left of their containers, their own stop removed.
    return ended, _orphans_remove(
        {
            engine: [item for item in items if item.session_id not in ended_now]
            for engine, items in seen.items()
        }
    )


def _orphans_remove(seen: dict[str, list[container.Observed]]) -> int:
    """Remove what no live session owns, containers before the networks they were on; how
    many containers (each audited; a session's own network goes with a note in the log)."""
    owners = {item.session_id: _uuid(item.session_id) for items in seen.values() for item in items}
    live = set(
        WorkspaceSession.objects.filter(
            pk__in=[pk for pk in owners.values() if pk], status__in=WorkspaceSession.LIVE
        ).values_list("pk", flat=True)
    )
    removed = 0
    for engine, items in seen.items():
        for item in sorted(items, key=lambda item: item.network):
            owner = owners[item.session_id]
            if owner in live or not container.remove(engine, item):
                continue
            if item.network:
                logger.info("removed network %s on %s: no live session owns it", item.id, engine)
                continue
            removed += 1
            with transaction.atomic():
                if owner is not None:
                    WorkspaceSession.objects.filter(
                        pk=owner, provisioner_state__container=item.id
                    ).update(
                        provisioner_state={"engine": engine, "container": item.id, "removed": True}
                    )
                audit.record(
                    action="container_removed",
                    actor=None,
                    resource=f"session:{item.session_id}"[:200],
                    details={"engine": engine, "container": item.id, "reason": "no_live_session"},
                    origin=SYSTEM,
                )
    return removed


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _session_end(
    *,
    session_id,
    actor,
    reason: str | Callable[[WorkspaceSession], str | None],
    origin: Origin,
    action: str,
    status: str = Status.TERMINATED,
    success: bool = True,
    resource: str | None = None,
    details: dict | None = None,
) -> tuple[WorkspaceSession, bool]:
    """End one session if it is still live: (the session, whether this call ended it).

    `reason` may be a function of the locked row returning None to leave it alone (the reaper
    uses this so a session that saw traffic since it was selected survives).
    """
    with transaction.atomic():
        # NO KEY: see _session_create (a ticket or an entry naming this session may be committing).
        session = WorkspaceSession.objects.select_for_update(no_key=True).get(pk=session_id)
        if not session.is_live:
            return session, False
        if callable(reason):
            reason = reason(session)
            if reason is None:
                return session, False
        workspace = None
        if session.workspace_id is not None:
            workspace = (
                Workspace.objects.select_for_update().filter(pk=session.workspace_id).first()
            )
        now = timezone.now()
        session.status = status
        session.ended_at = now
        session.end_reason = reason
        session.save(update_fields=["status", "ended_at", "end_reason"])
        if (
            workspace is not None
            and workspace.status == Workspace.Status.RUNNING
            and not WorkspaceSession.objects.filter(
                workspace_id=workspace.pk, status__in=WorkspaceSession.LIVE
            ).exists()
        ):
            workspace.status = Workspace.Status.AVAILABLE
            workspace.save(update_fields=["status", "updated_at"])
        audit.record(
            action=action,
            actor=actor,
            resource=resource or f"session:{session.id}",
            details={
                "session_id": str(session.id),
                "runtime_id": session.runtime_id,
                "workspace_id": session.workspace_id,
                "reason": reason,
                "duration_seconds": round((now - session.started_at).total_seconds()),
                **(details or {}),
            },
            origin=origin,
            success=success,
        )
        session_ended.send(
            sender=WorkspaceSession, session=session, reason=reason, actor=actor, origin=origin
        )
        _after_commit_end(session, reason)
    return session, True


def _after_commit_end(session: WorkspaceSession, reason: str) -> None:
    """Once the end commits: relays first, so viewers see the session end before the desktop
    disappears. Each step is robust: a failure is logged and never undoes the end."""

    def notify_relays() -> None:
        async_to_sync(get_channel_layer().group_send)(
            session.group_name,
            {"type": SESSION_ENDED, "reason": reason, "session_id": str(session.id)},
        )

    def stop_desktop() -> None:
        _stop_desktop(session)  # logs its own failures

    transaction.on_commit(notify_relays, robust=True)
    transaction.on_commit(stop_desktop)


def _stop_desktop(session: WorkspaceSession) -> None:
    try:
        provisioner_named(session.provisioner).stop(session)
    except Exception:
        # The session has ended either way; a desktop left behind is cleaned up by the
        # provisioner's next start (orphan sweep), so log it rather than fail the caller.
        logger.exception(
            "provisioner %r failed to stop session %s", session.provisioner, session.pk
        )
