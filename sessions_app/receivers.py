"""Sessions end when what they stand on goes: the account (accounts/signals.py) or the workspace
(workspaces/signals.py). Connected in SessionsAppConfig.ready(); each runs in the sender's
transaction and returns how many live sessions it ended."""

from __future__ import annotations

from accounts.models import User
from core.network import Origin
from sessions_app.models import WorkspaceSession
from sessions_app.services import EndReason, sessions_terminate


def account_sessions_end(sender, *, user: User, actor, origin: Origin, **kwargs) -> int:
    """The account was turned off: its live sessions end (closing their relay connections)."""
    return sessions_terminate(
        sessions=WorkspaceSession.objects.filter(user=user),
        actor=actor,
        reason=EndReason.ACCOUNT_DISABLED,
        origin=origin,
    )


def workspace_sessions_end(
    sender, *, workspace_ids: list[str], reset: bool, actor, origin: Origin, **kwargs
) -> int:
    """The workspaces are about to be deleted (one, or the catalog on a reset): their live
    sessions end first; the sessions' history keeps a snapshot of the workspace."""
    return sessions_terminate(
        sessions=WorkspaceSession.objects.filter(workspace_id__in=workspace_ids),
        actor=actor,
        reason=EndReason.WORKSPACES_RESET if reset else EndReason.WORKSPACE_DELETED,
        origin=origin,
    )
