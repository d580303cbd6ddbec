"""What sessions_app tells the apps above it (DESIGN.md: an app imports only from floors below it).

Sent synchronously, inside the transaction of the change it announces, so what a receiver writes
commits or rolls back with that change; an exception in a receiver undoes it. Receivers are
connected in their own app's AppConfig.ready().
"""

from __future__ import annotations

from django.dispatch import Signal

# `session` (its row locked, already marked ended) has just ended for `reason`, by `actor` from
# `origin`. Receivers end what was open on it (app_proxy: the session's app grants, each
# audited with its bytes).
session_ended = Signal()  # session=, reason=, actor=, origin=
