"""What accounts tells the apps above it (DESIGN.md: an app imports only from floors below it).

Each is sent synchronously, inside the transaction of the change it announces, so what a
receiver writes commits or rolls back with that change; an exception in a receiver undoes it.
Receivers are connected in their own app's AppConfig.ready().
"""

from __future__ import annotations

from django.dispatch import Signal

# Every sign-in of `user` has just ended (signing out everywhere, a new password). Receivers void
# the credentials they issued in the account's name that are not yet spent, and return how many
# (the audit entry's `desktop_passes_voided` is their sum).
signed_out_everywhere = Signal()  # user=

# An administrator has just turned `user`'s account off. Receivers end what it has running, as
# `actor` from `origin`, and return how many they ended (the admin's message gives the sum).
account_disabled = Signal()  # user=, actor=, origin=
