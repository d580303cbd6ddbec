from __future__ import annotations

from dataclasses import dataclass

from audit.chain import GENESIS, entry_hash
from audit.models import AuditEntry


@dataclass(frozen=True)
class ChainBreak:
    entry_id: int
    reason: str


def audit_chain_first_break(*, batch_size: int = 2000) -> ChainBreak | None:
    """Walk the chain in append order; the first entry whose link or hash is wrong, if any."""
    previous = GENESIS
    for entry in AuditEntry.objects.order_by("id").iterator(chunk_size=batch_size):
        if entry.prev_hash != previous:
            return ChainBreak(entry.id, "prev_hash does not match the previous entry's hash")
        if entry_hash(entry.prev_hash, entry) != entry.hash:
            return ChainBreak(entry.id, "hash does not match the entry's contents")
        previous = entry.hash
    return None
