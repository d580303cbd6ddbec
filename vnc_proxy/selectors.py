"""Reading desktop runtimes: the sessions behind the agents API's `workspaceId`."""

from __future__ import annotations

from django.db.models import F, Q, QuerySet

from accounts.models import User
from core.exceptions import NotFound
from core.queries import CompiledQuery, queryable
from sessions_app.models import WorkspaceSession
from sessions_app.selectors import owner_mfa_enabled
from workspaces.models import Workspace
from workspaces.selectors import usable_by

# The agents API's names for session statuses.
RUNTIME_STATUS = {
    WorkspaceSession.Status.STARTING: "provisioning",
    WorkspaceSession.Status.READY: "ready",
    WorkspaceSession.Status.TERMINATED: "stopped",
    WorkspaceSession.Status.ERROR: "error",
}

_DESKTOP = (
    Q(
        upstream_kind__in=[
            WorkspaceSession.UpstreamKind.TCP,
            WorkspaceSession.UpstreamKind.WEBSOCKET,
        ]
    )
    | Q(workspace__connection_type=Workspace.ConnectionType.VNC)
    | Q(provisioner=Workspace.Provisioner.CONTAINER)
)


# A web app reached through the app proxy (issue 21): tickets of its own (app_proxy).
_APP = Q(upstream_kind=WorkspaceSession.UpstreamKind.HTTP) | Q(
    provisioner=Workspace.Provisioner.WEB
)


def app_runtimes() -> QuerySet[WorkspaceSession]:
    """Sessions of a web app the app proxy reaches (or will, once started)."""
    return WorkspaceSession.objects.filter(_APP).order_by("-started_at", "-id")


def desktop_runtimes() -> QuerySet[WorkspaceSession]:
    """Sessions with a desktop the relay can reach (or that will have one once started)."""
    return (
        WorkspaceSession.objects.filter(_DESKTOP)
        .select_related("workspace", "user")
        .order_by("-started_at", "-id")
    )


def desktop_runtimes_of(user, *, live: bool = False) -> QuerySet[WorkspaceSession]:
    runtimes = desktop_runtimes().filter(user_id=user.pk)
    return runtimes.filter(status__in=WorkspaceSession.LIVE) if live else runtimes


def live_runtimes() -> QuerySet[WorkspaceSession]:
    return desktop_runtimes().filter(status__in=WorkspaceSession.LIVE)


def _own_runtime(
    user, runtime_id: str, *, to_connect: bool, app: bool = False
) -> QuerySet[WorkspaceSession]:
    # The session row alone: its callers read its own columns, and the workspace's secrets
    # would be decrypted for nothing on every ticket.
    if app:
        runtimes = app_runtimes().filter(user_id=user.pk)
    else:
        runtimes = desktop_runtimes_of(user).select_related(None)
    if to_connect:
        # What a ticket needs of the session, no more: its other columns (the upstream's secret
        # above all, decrypted as it is read) would be converted for nothing on every ticket.
        runtimes = runtimes.only(
            "id",
            "runtime_id",
            "status",
            "upstream_kind",
            "provisioner",
            *(("workspace_id",) if app else ("rfb_password",)),
        )
        table = WorkspaceSession._meta.db_table
        runtimes = runtimes.filter(usable_by(user, workspace_column=(table, "workspace_id")))
        runtimes = runtimes.annotate(
            owner_mfa_enabled=owner_mfa_enabled(),
            requires_tunnel=F("workspace__requires_netbird"),
        )
        if app:
            runtimes = runtimes.annotate(prefix_allowed=F("workspace__app_path_prefix_allowed"))
    # runtime_id is unique: no ORDER BY (first() would add one).
    return runtimes.filter(runtime_id=runtime_id).order_by()[:1]


# Every desktop ticket asks this: compiled once (core/queries.py).
_runtime_to_connect = CompiledQuery(
    lambda user_id, runtime_id: _own_runtime(User(pk=user_id), runtime_id, to_connect=True),
    user_id=-7_000_000_001,
    runtime_id="\x00stand-in",
)


def access_runtime(
    user, runtime_id: str, *, to_connect: bool = False, app: bool = False
) -> WorkspaceSession:
    """The caller's own desktop runtime `runtime_id` (with `app`: web app runtime, which the
    app proxy reaches), in any status.

    Someone else's runtime and one that does not exist get the same 404, so runtime ids
    cannot be probed. `to_connect`: only while its workspace is still shared with the caller
    (withdrawn since the launch, it takes no new connection; one already open stays until it
    closes or the session ends), checked in the same query, which also reads whether the
    caller turned two-step sign-in on (`owner_mfa_enabled`) and whether the workspace is
    reached only through the tunnel (`requires_tunnel`).
    """
    if not queryable(runtime_id):
        runtimes = WorkspaceSession.objects.none()
    elif app:
        runtimes = _own_runtime(user, runtime_id, to_connect=to_connect, app=True)
    elif to_connect:
        runtimes = _runtime_to_connect(user_id=user.pk, runtime_id=runtime_id)
    else:
        runtimes = _own_runtime(user, runtime_id, to_connect=False)
    runtime = next(iter(runtimes), None)
    if runtime is None:
        raise NotFound("Workspace runtime not found", "not_found")
    return runtime


def runtime_get(runtime_id: str) -> WorkspaceSession:
    """Any desktop runtime, for the super gate's routes."""
    runtime = None
    if queryable(runtime_id):
        runtime = desktop_runtimes().filter(runtime_id=runtime_id).first()
    if runtime is None:
        raise NotFound("Workspace runtime not found", "not_found")
    return runtime


def current_runtime_of(user) -> WorkspaceSession | None:
    """The runtime /me reports: the newest live one, else the newest that ever was."""
    return desktop_runtimes_of(user, live=True).first() or desktop_runtimes_of(user).first()


def runtime_data(runtime: WorkspaceSession) -> dict:
    return {
        "workspaceId": runtime.runtime_id,
        "status": RUNTIME_STATUS.get(runtime.status, runtime.status),
        "sessionId": runtime.id,
        "workspace": {
            "id": runtime.workspace_id,
            "name": runtime.workspace_name,
            "type": runtime.workspace_type,
        },
        "startedAt": runtime.started_at,
        "readyAt": runtime.ready_at,
    }


def runtime_admin_data(runtime: WorkspaceSession) -> dict:
    return {
        **runtime_data(runtime),
        "user": {"id": runtime.user_id, "email": runtime.user.email},
        "lastSeenAt": runtime.last_seen_at,
        "endedAt": runtime.ended_at,
        "endReason": runtime.end_reason,
        "clientIp": runtime.client_ip,
    }
