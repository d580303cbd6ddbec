"""The catalog page: every workspace as a card, launched and stopped with plain form posts."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from accounts.selectors import mfa_required_for
from accounts.views import session_mfa_verified
from core.exceptions import APIError
from core.network import Origin, client_ip, in_networks
from core.ratelimit import RateLimited
from sessions_app import services as sessions
from sessions_app.selectors import live_sessions_of
from workspaces.selectors import workspaces_for

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


@login_required
def catalog(request):
    live = {session.workspace_id: session for session in live_sessions_of(request.user)}
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
        "workspaces/catalog.html",
        {
            "cards": cards,
            "on_tunnel": on_tunnel,
            "mfa_required": mfa_required,
            "mfa_verified": session_mfa_verified(request),
        },
    )


@login_required
@require_POST
def launch(request, workspace_id: str):
    try:
        session, _created = sessions.session_launch(
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
def stop(request, workspace_id: str):
    try:
        sessions.workspace_stop(
            user=request.user, workspace_id=workspace_id, origin=Origin.of(request)
        )
    except APIError as exc:
        messages.error(request, str(exc.detail))
    else:
        messages.success(request, "The workspace was stopped.")
    back = request.POST.get("next", "")
    if url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}):
        return redirect(back)
    return redirect("catalog")
