"""An account's live connections: the desktop relays and Socket.IO sockets open in its name.

Each joins the channel-layer group `account.<pk>` for as long as it is open, whichever server
process holds it. Whatever ends the account's credentials on every device (signing out
everywhere, turning the account off) then ends these too: a stolen laptop's open desktop viewer
is closed (relay code 4411), and its socket is disconnected by the server (Socket.IO's
"io server disconnect": the client does not reconnect by itself). The desktops keep running; the
person reconnects from a device that signs in again.
"""

from __future__ import annotations

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

ACCOUNT_SIGNED_OUT = "account.signed_out"  # {"type": ..., "user_id": "<pk>"}


def account_group(user_id: int | str) -> str:
    return f"account.{user_id}"


def signed_out_message(user_id: int | str) -> dict:
    return {"type": ACCOUNT_SIGNED_OUT, "user_id": str(user_id)}


def connections_close(*, user_id: int) -> None:
    """Once the caller's transaction commits, close every live connection of the account, in
    every server process. Nothing is sent if the transaction rolls back; a channel layer that
    cannot be reached is logged and never undoes the commit."""

    def notify() -> None:
        layer = get_channel_layer()
        if layer is not None:
            async_to_sync(layer.group_send)(account_group(user_id), signed_out_message(user_id))

    transaction.on_commit(notify, robust=True)
