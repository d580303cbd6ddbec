"""The hash chain: hash = SHA-256(prev_hash + canonical JSON of the entry).

The canonical JSON is of the entry as the database gives it back, so that an entry hashed
before it was written verifies when it is read: `details` are stored already spelled as
PostgreSQL's jsonb spells them (audit.services.redact, with `stored_number`).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Iterator
from datetime import UTC

GENESIS = "0" * 64

# jsonb keeps a number as an exact decimal and gives it back in plain notation, with no
# negative zero: the float 1e16 (which Python writes "1e+16", as it writes every float from
# 1e16 up, all of them integers) reads back as the integer 10000000000000000, and -0.0 as 0.0.
# Any other finite float reads back as itself.
_PLAIN_FROM = 1e16
# How many such numbers an entry written before they were stored as read back may hold and
# still be verified by trying each spelling its writer may have hashed (2**8 hashes at most).
LEGACY_SPELLINGS_TRIED = 8


def stored_number(value: float) -> float | int | str:
    """A float as jsonb gives it back; NaN and ±Infinity, which JSON has no spelling for and
    jsonb refuses, as the strings "NaN", "Infinity" and "-Infinity"."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return 0.0
    return int(value) if abs(value) >= _PLAIN_FROM else value


def canonical(entry, *, details=None) -> str:
    return json.dumps(
        {
            "created_at": entry.created_at.astimezone(UTC).isoformat(),
            "actor": entry.actor_id,
            "actor_email": entry.actor_email,
            "action": entry.action,
            "resource": entry.resource,
            "details": entry.details if details is None else details,
            "ip_address": entry.ip_address,
            "user_agent": entry.user_agent,
            "success": entry.success,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )


def entry_hash(prev_hash: str, entry, *, details=None) -> str:
    return hashlib.sha256((prev_hash + canonical(entry, details=details)).encode()).hexdigest()


def entry_verifies(entry) -> bool:
    """Whether the entry's hash is that of its previous hash and its contents as read.

    An entry written before details were stored as read back was hashed with its numbers as its
    writer spelled them: one whose details now hold an integer from 1e16 up (perhaps a float
    once) or a 0.0 (perhaps -0.0 once) is also tried with each of those spellings. Each is the
    same number, so no spelling tried changes what the entry says."""
    if entry_hash(entry.prev_hash, entry) == entry.hash:
        return True
    return any(
        entry_hash(entry.prev_hash, entry, details=details) == entry.hash
        for details in legacy_spellings(entry.details)
    )


def _respellable(value) -> list[object]:
    """The other spellings a number read back may have been written with (none, or one)."""
    if isinstance(value, float) and value == 0:
        return [-0.0]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= _PLAIN_FROM:
        try:
            written = float(value)
        except OverflowError:  # beyond any float: an integer when it was written too
            return []
        return [written] if int(written) == value else []
    return []


def _leaves(value) -> Iterator:
    if isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


def _rebuilt(value, picks: Iterator):
    """`value` with each re-spellable number replaced by the next of `picks`."""
    if isinstance(value, dict):
        return {key: _rebuilt(item, picks) for key, item in value.items()}
    if isinstance(value, list):
        return [_rebuilt(item, picks) for item in value]
    return next(picks) if _respellable(value) else value


def legacy_spellings(details) -> Iterator:
    """`details` with some of its re-spellable numbers as they may have been written, every
    combination but the one read (none if there are more than LEGACY_SPELLINGS_TRIED)."""
    choices = [[leaf, *_respellable(leaf)] for leaf in _leaves(details) if _respellable(leaf)]
    if not choices or len(choices) > LEGACY_SPELLINGS_TRIED:
        return
    for combination in itertools.islice(itertools.product(*choices), 1, None):
        yield _rebuilt(details, iter(combination))
