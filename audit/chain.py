"""The hash chain: hash = SHA-256(prev_hash + canonical JSON of the entry)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC

GENESIS = "0" * 64


def canonical(entry) -> str:
    return json.dumps(
        {
            "created_at": entry.created_at.astimezone(UTC).isoformat(),
            "actor": entry.actor_id,
            "actor_email": entry.actor_email,
            "action": entry.action,
            "resource": entry.resource,
            "details": entry.details,
            "ip_address": entry.ip_address,
            "user_agent": entry.user_agent,
            "success": entry.success,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )


def entry_hash(prev_hash: str, entry) -> str:
    return hashlib.sha256((prev_hash + canonical(entry)).encode()).hexdigest()
