"""What workspaces tells the apps above it (DESIGN.md: an app imports only from floors below it).

Sent synchronously, inside the transaction of the change it announces, so what a receiver writes
commits or rolls back with that change; an exception in a receiver undoes it. Receivers are
connected in their own app's AppConfig.ready().
"""

from __future__ import annotations

from django.dispatch import Signal

# The workspaces `workspace_ids` (their rows locked) are about to be deleted by `actor` from
# `origin`: one deleted, or every one when `reset` (the catalog goes back to its defaults).
# Receivers end what runs on them and return how many they ended (the audit entry's
# `terminated_sessions` is the sum).
workspaces_removing = Signal()  # workspace_ids=, reset=, actor=, origin=
