"""How the relay ends a browser connection. Refusals (44xx) happen before any desktop byte."""

from __future__ import annotations

from enum import IntEnum


class CloseCode(IntEnum):
    NORMAL = 1000  # the desktop closed the connection, or the browser did
    UNSUPPORTED_DATA = 1003  # a text frame: the relay carries binary RFB only
    UPSTREAM_FAILED = 1011  # the desktop could not be reached or failed mid-stream
    TICKET_INVALID = 4401  # missing, garbage, forged, expired or already used
    FORBIDDEN = 4403  # the ticket is not for this workspace, or the account is disabled
    UNKNOWN_WORKSPACE = 4404  # no such runtime for the ticket's user
    IDLE = 4408  # no traffic for WORKGATE_VNC_IDLE_TIMEOUT seconds
    NOT_READY = 4409  # the session is not (or no longer) ready
    SESSION_ENDED = 4410  # the session was stopped, terminated or reaped while connected
    SIGNED_OUT = 4411  # the account was signed out everywhere (or turned off) while connected
    TOO_MANY_VIEWERS = 4429  # the desktop has WORKGATE_VNC_MAX_VIEWERS connections open already
