"""Reading sessions: the one permission-checked fetch, lists, and what a launch really enforced."""

from __future__ import annotations

import uuid

from django.db.models import Exists, OuterRef, QuerySet

from accounts.models import Profile
from audit.models import AuditEntry
from core.exceptions import Forbidden, NotFound
from core.permissions import admin_may
from core.queries import queryable
from sessions_app.models import WorkspaceSession

LIVE_FILTER = "live"  # a `status` filter value meaning starting or ready
# The Django permission (the one the admin site checks) that lets an administrator end other
# people's sessions (seeing them takes the view permission, which the change one grants too).
END_ANY = "sessions_app.change_workspacesession"


def sees_all_sessions(user) -> bool:
    """Whether `user`'s session lists hold everyone's sessions (an administrator who may view
    them) rather than only their own."""
    return admin_may(user, "sessions_app.view_workspacesession")


def access_session(user, session_id, *, end: bool = False) -> WorkspaceSession:
    """The session `session_id` if `user` may see it: its owner, or an administrator who may
    view sessions; with `end`, if `user` may also end it: its owner, or an administrator who
    may change sessions (one who may only view them gets 403 "Admin access required").

    Everyone else gets the same 404 as for a session that does not exist (and so does a
    malformed id), so ids of other people's sessions cannot be probed.
    """
    try:
        pk = session_id if isinstance(session_id, uuid.UUID) else uuid.UUID(str(session_id))
    except ValueError:
        raise NotFound("Session not found", "not_found") from None
    sessions = WorkspaceSession.objects.select_related("user", "workspace")
    if not sees_all_sessions(user):
        sessions = sessions.filter(user_id=getattr(user, "pk", None))
    session = sessions.filter(pk=pk).first()
    if session is None:
        raise NotFound("Session not found", "not_found")
    if end and session.user_id != user.pk and not admin_may(user, END_ANY):
        raise Forbidden("Admin access required", "admin_required")
    return session


def session_list(
    *, user, status: str | None = None, workspace: str | None = None, user_id: int | None = None
) -> QuerySet[WorkspaceSession]:
    """The caller's sessions (everyone's for an administrator who may view sessions), newest
    first, optionally filtered.

    `status` is one of the session statuses or "live" (starting or ready).
    """
    sessions = WorkspaceSession.objects.select_related("user").order_by("-started_at", "-id")
    if not queryable(status, workspace):
        return sessions.none()
    if not sees_all_sessions(user):
        sessions = sessions.filter(user_id=user.pk)
    if status == LIVE_FILTER:
        sessions = sessions.filter(status__in=WorkspaceSession.LIVE)
    elif status:
        sessions = sessions.filter(status=status)
    if workspace:
        sessions = sessions.filter(workspace_id=workspace)
    if user_id is not None:
        sessions = sessions.filter(user_id=user_id)
    return sessions


def live_sessions_of(user) -> QuerySet[WorkspaceSession]:
    return WorkspaceSession.objects.filter(
        user_id=user.pk, status__in=WorkspaceSession.LIVE
    ).order_by("-started_at")


def owner_mfa_enabled() -> Exists:
    """On session rows: whether the session's owner turned two-step sign-in on."""
    return Exists(Profile.objects.filter(user_id=OuterRef("user_id"), mfa_enabled=True))


def session_security(session: WorkspaceSession) -> dict[str, bool]:
    """What this deployment actually enforced for `session`'s launch, flag by flag.

    - encrypted_tunnel: the launching client came from a trusted network (the NetBird overlay).
    - identity_verified: the session belongs to an active account that authenticated (a signed
      access token or a signed-in browser session) to launch it.
    - mfa_enforced: a one-time code was verified for the sign-in that launched it. A user without
      MFA, in a deployment that does not require it, gets false: nothing was enforced.
    - session_recording: the launch is in the tamper-evident audit log. Workgate records the
      session's lifecycle (launch, desktop connects and disconnects with byte counts, stop,
      expiry), not its screen contents; the flag means exactly that record exists.
    - no_open_ports: the client is given nothing to connect to but Workgate itself. True when the
      desktop is reached only through the in-band relay (a VNC upstream held server-side), the
      web app only through the gateway's app proxy (provisioner `web`: its address, pinned at
      launch, is never handed to the browser), or the workspace exposes no address at all;
      false when the workspace hands the browser a URL of its own to open directly (a `static`
      workspace with a `url`, shown as a link).
    """
    user = session.user
    # The entry is written after the session row, in the same transaction: bounding created_at
    # keeps this an index range scan however long the log grows.
    audited = AuditEntry.objects.filter(
        created_at__gte=session.started_at,
        action="launch_workspace",
        success=True,
        details__session_id=str(session.id),
    ).exists()
    workspace = session.workspace
    direct_url = bool(workspace is not None and workspace.url)
    relayed = bool(session.upstream_kind) or session.provisioner == "web"
    return {
        "encrypted_tunnel": session.tunnel_status == "encrypted",
        "identity_verified": bool(user.is_active),
        "mfa_enforced": bool(session.mfa_verified),
        "session_recording": audited,
        "no_open_ports": relayed or not direct_url,
    }
