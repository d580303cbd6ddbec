"""The pages people use workspaces from: the catalog (every workspace as a card, launched and
stopped with plain form posts), the session list (own sessions; admins everyone's), stopping one,
and the viewer."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Case, Value, When
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from accounts.models import User
from accounts.selectors import mfa_required_for
from accounts.views import session_mfa_verified
from core.exceptions import APIError
from core.network import Origin, client_ip, in_networks
from core.permissions import admin_may
from core.queries import queryable
from core.ratelimit import RateLimited
from sessions_app import selectors, services
from sessions_app.models import WorkspaceSession
from workspaces.models import Workspace
from workspaces.selectors import workspace_granted, workspace_list, workspaces_for

PAGE_SIZE = 50
MFA_NEEDED = (
    "Opening a workspace requires a sign-in verified with a one-time code. Sign out and sign in "
    "again with the one-time code from your authenticator app."
)

ICON_LETTERS = {
    "sap": "SAP",
    "windows": "Win",
    "linux": "Lx",
    "browser": "Web",
    "code": "</>",
    "admin": "Adm",
    "panel": "Adm",
    "server": "Srv",
}

TYPE_LABELS = {
    "html5": "HTML5 desktop",
    "rdp": "RDP",
    "web": "Web app",
    "linux": "Linux",
    "browser": "Browser",
    "windows": "Windows",
    "dev": "Development",
    "admin": "Administration",
}
CONNECTION_LABELS = {"html5": "HTML5", "web": "Web", "vnc": "VNC", "browser": "Isolated browser"}


def _refusal(exc: APIError) -> str:
    """What a person should read when a launch is refused, by the API's machine code."""
    code = getattr(exc.detail, "code", "") or ""
    detail = str(exc.detail)
    hints = {
        "tunnel_required": "Connect to the NetBird tunnel, then launch again.",
        "mfa_required": "Sign out and sign in again with the one-time code from your "
        "authenticator app.",
        "session_limit": "Stop a session you no longer need on the Sessions page, then launch "
        "again.",
        "provisioner_unavailable": "An administrator has to set this desktop up on the server.",
    }
    hint = hints.get(code)
    return f"{detail} {hint}" if hint else detail


def _back(request, default: str):
    """Where a stop form asked to return to (`next`), if it is on this site; else `default`."""
    back = request.POST.get("next", "")
    if url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}):
        return redirect(back)
    return redirect(default)


@login_required
def catalog(request):
    live = {session.workspace_id: session for session in selectors.live_sessions_of(request.user)}
    on_tunnel = in_networks(client_ip(request), settings.WORKGATE_TRUSTED_NETWORKS)
    mfa_required = mfa_required_for(request.user)
    cards = [
        {
            "workspace": workspace,
            "session": live.get(workspace.id),
            "icon": ICON_LETTERS.get(workspace.icon, workspace.name[:1]),
            "type": TYPE_LABELS.get(workspace.type, workspace.type),
            "connection": CONNECTION_LABELS.get(
                workspace.connection_type, workspace.connection_type
            ),
        }
        for workspace in workspaces_for(request.user)
    ]
    return render(
        request,
        "sessions_app/catalog.html",
        {
            "cards": cards,
            "on_tunnel": on_tunnel,
            "mfa_required": mfa_required,
            "mfa_verified": session_mfa_verified(request),
        },
    )


@login_required
@require_POST
def workspace_launch(request, workspace_id: str):
    try:
        session, _created = services.session_launch(
            user=request.user,
            workspace_id=workspace_id,
            origin=Origin.of(request),
            mfa_verified=session_mfa_verified(request),
        )
    except RateLimited as exc:
        messages.error(request, f"Too many launches; try again in {exc.wait:.0f} seconds.")
        return redirect("catalog")
    except APIError as exc:
        messages.error(request, _refusal(exc))
        return redirect("catalog")
    return redirect("viewer", session_id=session.id)


@login_required
@require_POST
def workspace_stop(request, workspace_id: str):
    try:
        services.workspace_stop(
            user=request.user, workspace_id=workspace_id, origin=Origin.of(request)
        )
    except APIError as exc:
        messages.error(request, str(exc.detail))
    else:
        messages.success(request, "The workspace was stopped.")
    return _back(request, "catalog")


def _user_id_for(email: str) -> int:
    """The id of the account with this email; 0 (nobody) when there is none."""
    if not queryable(email):
        return 0
    return User.objects.filter(email__iexact=email).values_list("pk", flat=True).first() or 0


def _live_first(sessions):
    live = Case(When(status__in=WorkspaceSession.LIVE, then=Value(0)), default=Value(1))
    return sessions.annotate(live_rank=live).order_by("live_rank", "-started_at", "-id")


@login_required
def session_list_page(request):
    admin = selectors.sees_all_sessions(request.user)
    filters = {
        "status": request.GET.get("status", ""),
        "workspace": request.GET.get("workspace", "").strip(),
        "user": request.GET.get("user", "").strip() if admin else "",
    }
    rows = selectors.session_list(
        user=request.user,
        status=filters["status"] or None,
        workspace=filters["workspace"] or None,
        user_id=_user_id_for(filters["user"]) if filters["user"] else None,
    )
    page = Paginator(_live_first(rows), PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "sessions_app/sessions.html",
        {
            "page": page,
            "admin": admin,
            "ends_others": admin_may(request.user, selectors.END_ANY),
            "filters": filters,
            "statuses": [(selectors.LIVE_FILTER, "Live"), *WorkspaceSession.Status.choices],
            "workspaces": workspace_list() if admin else workspaces_for(request.user),
            "query": query.urlencode(),
        },
    )


@login_required
@require_POST
def session_stop(request, session_id):
    try:
        session = selectors.access_session(request.user, session_id, end=True)
        reason = (
            services.EndReason.USER_STOP
            if session.user_id == request.user.pk
            else services.EndReason.ADMIN_TERMINATE
        )
        services.session_terminate(
            session=session, actor=request.user, reason=reason, origin=Origin.of(request)
        )
    except APIError as exc:
        messages.error(request, str(exc.detail))
    else:
        messages.success(request, f"The session of {session.workspace_name} was stopped.")
    return _back(request, "sessions")


def _frameable_url(url: str) -> str:
    """Only http(s) targets go into the iframe; anything else (javascript:, data:) never does."""
    try:
        scheme = urlsplit(url).scheme
    except ValueError:  # e.g. an unbalanced "[" in the host
        return ""
    return url if scheme in ("http", "https") else ""


@login_required
def viewer(request, session_id):
    # The one permission-checked fetch; the viewer is for the owner alone (an admin watching
    # someone's desktop would need a ticket, and tickets are only ever minted for the owner).
    try:
        session = selectors.access_session(request.user, session_id)
    except APIError as exc:
        raise Http404("No such session.") from exc
    if session.user_id != request.user.pk:
        raise Http404("No such session.")
    if not workspace_granted(request.user, session.workspace_id):
        # Withdrawn from the user's groups since the launch: nothing new opens (a desktop's
        # ticket would be refused too); the session can still be stopped from the list.
        raise Http404("No such session.")
    if mfa_required_for(request.user) and not session_mfa_verified(request):
        # As for launching: a sign-in without the one-time code opens nothing (nor would the
        # desktop's ticket).
        messages.error(request, MFA_NEEDED)
        return redirect("catalog")
    workspace = session.workspace
    # A web app through the gateway: the page asks for an app ticket and the whole tab goes to
    # the app's own origin (static/workgate/app-viewer.js), never a frame.
    web_app = (
        session.upstream_kind == WorkspaceSession.UpstreamKind.HTTP
        or session.provisioner == Workspace.Provisioner.WEB
    )
    desktop = not web_app and (
        bool(session.upstream_kind)
        or session.provisioner == Workspace.Provisioner.CONTAINER
        or (workspace is not None and workspace.connection_type == workspace.ConnectionType.VNC)
    )
    return render(
        request,
        "sessions_app/viewer.html",
        {
            "session": session,
            "workspace": workspace,
            "desktop": desktop,
            "web_app": web_app,
            "frame_url": ""
            if desktop or web_app or workspace is None
            else _frameable_url(workspace.url),
        },
    )
