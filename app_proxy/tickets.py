"""App tickets: desktop tickets' JWTs (vnc_proxy/tickets.py) with a type and audience of their
own, so neither kind is accepted as the other, and neither as an access token. Minted, decoded,
spent and voided by vnc_proxy.tickets' functions: one ticket spender."""

from __future__ import annotations

from vnc_proxy.tickets import TICKET_TTL_SECONDS, TicketToken

APP_TICKET_TYPE = "app_ticket"
APP_TICKET_AUDIENCE = "workgate:app-proxy"

__all__ = ["APP_TICKET_AUDIENCE", "APP_TICKET_TYPE", "TICKET_TTL_SECONDS", "AppTicketToken"]


class AppTicketToken(TicketToken):
    token_type = APP_TICKET_TYPE
    audience = APP_TICKET_AUDIENCE
