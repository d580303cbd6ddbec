"""The assistant's tools: the REST API's own services, called with the asking user's rights.

A tool is a plain synchronous function run in the assistant's database threads. It makes one
domain call, shapes the answer for a model, and is audited (`assistant_tool`) right after the
service returns or refuses. A refusal (no tunnel, MFA, session limit, ...) is a result with
`success: false` and the service's message, never an exception out of the turn.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any
from zoneinfo import ZoneInfo

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from rest_framework.exceptions import APIException

from audit import services as audit
from core.exceptions import APIError
from core.network import Origin
from sessions_app.selectors import LIVE_FILTER, session_list
from sessions_app.services import session_launch, workspace_stop
from streaming.events import DisplayInfo
from streaming.providers.base import ToolOutcome, ToolSpec
from workspaces.selectors import workspace_search, workspaces_for

logger = logging.getLogger(__name__)

AUDIT_ACTION = "assistant_tool"
ACCOUNT_REVOKED = (
    "This account was turned off, signed out everywhere or its password changed; sign in again."
)
SESSION_STATUSES = ("live", "starting", "ready", "terminated", "error", "all")
MAX_LISTED = 50
MAX_AUDITED_ARGUMENTS = 2000  # characters of JSON


@dataclass(frozen=True)
class ToolContext:
    """Who is asking, and from where: the same facts the REST API passes its services."""

    user: Any
    origin: Origin
    mfa_verified: bool
    timezone: str = "UTC"


class ToolArgumentError(Exception):
    pass


def _as_now(ctx: ToolContext) -> ToolContext:
    """The context with the asker as the database has them now: a turn runs for seconds or
    minutes, and its tools act with the rights the account has when each one runs. An account
    turned off, signed out everywhere or whose password changed since the turn began may no
    longer act: the test is the one that ends its browser sessions (the session auth hash
    covers the password and the sign-in epoch)."""
    user = ctx.user  # for the pages' cookie sessions, a lazy object around the account
    current = get_user_model()._default_manager.filter(pk=user.pk, is_active=True).first()
    if current is None or current.get_session_auth_hash() != user.get_session_auth_hash():
        raise APIError(401, ACCOUNT_REVOKED, "account_revoked")
    return replace(ctx, user=current)


def _text_argument(arguments: dict, name: str, *, required: bool = True) -> str:
    value = arguments.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise ToolArgumentError(f"The argument {name!r} is required.")
        return ""
    if not isinstance(value, str):
        raise ToolArgumentError(f"The argument {name!r} must be a string.")
    return value.strip()


def _local(moment, tz: str) -> str | None:
    return timezone.localtime(moment, ZoneInfo(tz)).isoformat() if moment else None


def _workspace_data(workspace, running: set[str]) -> dict:
    return {
        "id": workspace.id,
        "name": workspace.name,
        "type": workspace.type,
        "description": workspace.description,
        "status": workspace.status,
        "connection_type": workspace.connection_type,
        "requires_netbird": workspace.requires_netbird,
        "running_for_you": workspace.id in running,
    }


def _running_ids(ctx: ToolContext) -> set[str]:
    return set(
        session_list(user=ctx.user, status=LIVE_FILTER, user_id=ctx.user.pk)
        .exclude(workspace_id=None)
        .values_list("workspace_id", flat=True)
    )


def _session_data(session, tz: str) -> dict:
    return {
        "session_id": str(session.id),
        "workspace_id": session.workspace_id,
        "workspace_name": session.workspace_name,
        "workspace_type": session.workspace_type,
        "status": session.status,
        "started_at": _local(session.started_at, tz),
        "ready_at": _local(session.ready_at, tz),
        "ended_at": _local(session.ended_at, tz),
        "stream_url": f"/viewer/{session.id}",
    }


# --- The tools -----------------------------------------------------------------------------------


def list_workspaces(ctx: ToolContext, arguments: dict) -> tuple[dict, str]:
    running = _running_ids(ctx)
    workspaces = [_workspace_data(w, running) for w in workspaces_for(ctx.user)[:MAX_LISTED]]
    return {"workspaces": workspaces, "count": len(workspaces)}, ""


def search_workspaces(ctx: ToolContext, arguments: dict) -> tuple[dict, str]:
    query = _text_argument(arguments, "query")
    running = _running_ids(ctx)
    found = workspace_search(query, user=ctx.user)[:MAX_LISTED]
    workspaces = [_workspace_data(w, running) for w in found]
    return {"query": query, "workspaces": workspaces, "count": len(workspaces)}, ""


def launch_workspace(ctx: ToolContext, arguments: dict) -> tuple[dict, str]:
    workspace_id = _text_argument(arguments, "workspace_id")
    session, created = session_launch(
        user=ctx.user,
        workspace_id=workspace_id,
        origin=ctx.origin,
        mfa_verified=ctx.mfa_verified,
    )
    return {
        "created": created,
        "session_id": str(session.id),
        "workspace": {
            "id": session.workspace_id,
            "name": session.workspace_name,
            "type": session.workspace_type,
        },
        "status": session.status,
        "tunnel_status": session.tunnel_status,
        "stream_url": f"/viewer/{session.id}",
    }, f"workspace:{workspace_id}"


def stop_workspace(ctx: ToolContext, arguments: dict) -> tuple[dict, str]:
    workspace_id = _text_argument(arguments, "workspace_id")
    session = workspace_stop(user=ctx.user, workspace_id=workspace_id, origin=ctx.origin)
    return {
        "message": "Workspace stopped successfully",
        "session_id": str(session.id),
        "workspace_id": workspace_id,
        "workspace_name": session.workspace_name,
        "status": session.status,
    }, f"workspace:{workspace_id}"


def list_sessions(ctx: ToolContext, arguments: dict) -> tuple[dict, str]:
    status = _text_argument(arguments, "status", required=False) or LIVE_FILTER
    if status not in SESSION_STATUSES:
        raise ToolArgumentError(f"The status must be one of {', '.join(SESSION_STATUSES)}.")
    # Only the caller's own sessions, even for an administrator: the assistant acts for the
    # person asking, and the admin API is where everyone's sessions are read.
    sessions = session_list(
        user=ctx.user, status=None if status == "all" else status, user_id=ctx.user.pk
    )
    data = [_session_data(session, ctx.timezone) for session in sessions[:MAX_LISTED]]
    return {"status": status, "sessions": data, "count": len(data)}, ""


@dataclass(frozen=True)
class Tool:
    spec: ToolSpec
    run: Callable[[ToolContext, dict], tuple[Any, str]]
    display: Callable[[dict], DisplayInfo]


def _workspace_id_schema(verb: str) -> dict:
    return {
        "type": "object",
        "properties": {
            "workspace_id": {
                "type": "string",
                "description": f"The id of the workspace to {verb} (e.g. ws-linux-desktop), "
                "as returned by list_workspaces or search_workspaces.",
            }
        },
        "required": ["workspace_id"],
        "additionalProperties": False,
    }


TOOLS: dict[str, Tool] = {
    tool.spec.name: tool
    for tool in (
        Tool(
            ToolSpec(
                "list_workspaces",
                "List every workspace in the catalog with its id, type and status, and whether "
                "the user already has it running.",
                {"type": "object", "properties": {}, "additionalProperties": False},
            ),
            list_workspaces,
            lambda args: DisplayInfo("list", "Listing workspaces"),
        ),
        Tool(
            ToolSpec(
                "search_workspaces",
                "Find workspaces whose id, name, description or type matches every word of "
                "the query.",
                {
                    "type": "object",
                    "properties": {"query": {"type": "string", "description": "Words to match"}},
                    "required": ["query"],
                    "additionalProperties": False,
                },
            ),
            search_workspaces,
            lambda args: DisplayInfo("search", f'Searching workspaces for "{args.get("query")}"'),
        ),
        Tool(
            ToolSpec(
                "launch_workspace",
                "Launch a workspace for the user (or return the session they already have) "
                "and give the address of its viewer.",
                _workspace_id_schema("launch"),
            ),
            launch_workspace,
            lambda args: DisplayInfo("rocket", f"Launching {args.get('workspace_id')}"),
        ),
        Tool(
            ToolSpec(
                "stop_workspace",
                "Stop the user's live session of a workspace.",
                _workspace_id_schema("stop"),
            ),
            stop_workspace,
            lambda args: DisplayInfo("stop", f"Stopping {args.get('workspace_id')}"),
        ),
        Tool(
            ToolSpec(
                "list_sessions",
                "List the user's own workspace sessions, newest first. By default only the "
                "live ones (starting or ready).",
                {
                    "type": "object",
                    "properties": {
                        "status": {
                            "type": "string",
                            "enum": list(SESSION_STATUSES),
                            "description": "live (default), one session status, or all",
                        }
                    },
                    "additionalProperties": False,
                },
            ),
            list_sessions,
            lambda args: DisplayInfo("activity", "Checking your sessions"),
        ),
    )
}


def tool_specs() -> list[ToolSpec]:
    return [tool.spec for tool in TOOLS.values()]


def tool_display(name: str, arguments: dict) -> DisplayInfo:
    tool = TOOLS.get(name)
    return tool.display(arguments) if tool else DisplayInfo("tool", name)


def tool_call(ctx: ToolContext, name: str, arguments: dict) -> ToolOutcome:
    """Run one tool for `ctx.user` and audit it. Never raises for a refusal."""
    tool = TOOLS.get(name)
    resource = ""
    code = ""
    try:
        if tool is None:
            raise ToolArgumentError(f"There is no tool named {name!r}.")
        response, resource = tool.run(_as_now(ctx), arguments)
        outcome = ToolOutcome(response, True)
    except ToolArgumentError as exc:
        code = "invalid_arguments"
        outcome = ToolOutcome({"error": str(exc), "code": code}, False)
    except APIException as exc:  # the services' refusals, a rate limit's too
        code = str(exc.get_codes())
        outcome = ToolOutcome({"error": str(exc.detail), "code": code}, False)
    except Exception:
        logger.exception("assistant tool %s failed", name)
        code = "tool_failed"
        outcome = ToolOutcome({"error": "The tool failed unexpectedly.", "code": code}, False)
    if not resource and isinstance(arguments.get("workspace_id"), str):
        resource = f"workspace:{arguments['workspace_id']}"
    # The arguments come from a model: keep the log readable whatever it sent.
    shown = arguments if len(json.dumps(arguments, default=str)) <= MAX_AUDITED_ARGUMENTS else {}
    details: dict[str, Any] = {"tool": name, "arguments": shown}
    if code:
        details["code"] = code
    with transaction.atomic():
        audit.record(
            action=AUDIT_ACTION,
            actor=ctx.user,
            resource=resource[:200],
            details=details,
            origin=ctx.origin,
            success=outcome.success,
        )
    return outcome
