"""App grants and tickets follow their session (sessions_app/signals.py) and their account
(accounts/signals.py). Connected in AppProxyConfig.ready(); each runs in the sender's
transaction, so a grant ends exactly when what it stood on does."""

from __future__ import annotations

from accounts.models import User
from app_proxy.models import AppGrant
from app_proxy.services import app_tickets_void, grants_end
from core.network import Origin
from sessions_app.models import WorkspaceSession

SIGNED_OUT = "signed_out"


def session_grants_end(
    sender, *, session: WorkspaceSession, reason: str, actor, origin: Origin, **kwargs
) -> int:
    """The session ended (stopped, terminated, reaped, its account disabled): its app grants
    end with it, for the same reason; how many."""
    return grants_end(
        AppGrant.objects.filter(session=session), reason=reason, actor=actor, origin=origin
    )


def account_app_access_void(sender, *, user: User, **kwargs) -> int:
    """Every sign-in of the account ended: its unused app tickets are void, and its open app
    grants end (their cookies open nothing from the next request on); how many of both."""
    voided = app_tickets_void(user=user)
    return voided + grants_end(AppGrant.objects.filter(user=user), reason=SIGNED_OUT, actor=None)
