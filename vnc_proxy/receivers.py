"""Desktop tickets follow their account (accounts/signals.py). Connected in VncProxyConfig.ready();
each runs in the sender's transaction."""

from __future__ import annotations

from accounts.models import User
from vnc_proxy.services import tickets_void


def account_tickets_void(sender, *, user: User, **kwargs) -> int:
    """Every sign-in of the account ended: its unused tickets are void too; how many."""
    return tickets_void(user=user)
