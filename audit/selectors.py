from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from django.db.models import QuerySet

from audit.chain import GENESIS, entry_verifies
from audit.models import AuditEntry
from core.permissions import admin_may
from core.queries import queryable


@dataclass(frozen=True)
class ChainBreak:
    entry_id: int
    reason: str


def audit_chain_breaks(*, batch_size: int = 2000) -> Iterator[ChainBreak]:
    """Walk the chain in append order: every entry whose link or hash is wrong, as found.

    Past a break the walk goes on from the entry's stored hash, so an edited entry is one break
    and the entries after it are judged on their own."""
    previous = GENESIS
    for entry in AuditEntry.objects.order_by("id").iterator(chunk_size=batch_size):
        reasons = []
        if entry.prev_hash != previous:
            reasons.append("prev_hash does not match the previous entry's hash")
        if not entry_verifies(entry):
            reasons.append("hash does not match the entry's contents")
        if reasons:
            yield ChainBreak(entry.id, "; ".join(reasons))
        previous = entry.hash


def audit_chain_first_break(*, batch_size: int = 2000) -> ChainBreak | None:
    """The first entry whose link or hash is wrong, if any."""
    return next(audit_chain_breaks(batch_size=batch_size), None)


def audit_entry_list(
    *,
    user,
    action: str | None = None,
    actor: int | str | None = None,
    resource: str | None = None,
    success: bool | None = None,
    since=None,
    until=None,
) -> QuerySet[AuditEntry]:
    """Audit entries newest first: an administrator who may view the audit log sees everything,
    anyone else the entries they are the actor of. `actor` is a user id or an email address;
    `resource` names one thing exactly (`workspace:ws-…`, `session:<uuid>`, `user:<id>`)."""
    entries = AuditEntry.objects.order_by("-id")
    if not queryable(action, actor, resource):
        return entries.none()
    if not admin_may(user, "audit.view_auditentry"):
        entries = entries.filter(actor_id=user.pk)
    if action:
        entries = entries.filter(action=action)
    if isinstance(actor, int):
        entries = entries.filter(actor_id=actor)
    elif actor:
        entries = entries.filter(actor_email__iexact=actor)
    if resource:
        entries = entries.filter(resource=resource)
    if success is not None:
        entries = entries.filter(success=success)
    if since is not None:
        entries = entries.filter(created_at__gte=since)
    if until is not None:
        entries = entries.filter(created_at__lte=until)
    return entries
