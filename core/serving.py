"""What a server process changes in a library once, before it takes connections.

autobahn pretty-prints its settings for a debug line on every WebSocket connection, whether or
not debug logging is on (the arguments are built before the logger drops the line), which
costs more CPU than reading the handshake itself. That module's `pformat` becomes `repr`: the
same data, on one line, when debug logging shows it.
"""

from __future__ import annotations


def autobahn_debug_dumps_unformatted() -> None:
    """Call once, in the ASGI module (config/asgi.py)."""
    try:
        from autobahn.websocket import protocol
    except ImportError:  # not served by Daphne: nothing to do
        return
    # Every use of the name in that module is an argument of a debug line or a debug __str__
    # (tests/test_upstream_contracts.py); without it, autobahn runs as published.
    if getattr(protocol, "pformat", None) is not None:
        protocol.pformat = repr
