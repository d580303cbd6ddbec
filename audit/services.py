"""Writing the audit log. Call `record()` inside the transaction of the change it describes."""

from __future__ import annotations

import ipaddress
import json
import re

from django.core.exceptions import ValidationError
from django.db import connection, models, transaction
from django.db.models.sql import InsertQuery, UpdateQuery
from django.utils import timezone
from django.utils.ipv6 import clean_ipv6_address

from audit.chain import GENESIS, canonical, entry_hash, stored_number
from audit.models import AuditEntry
from core.network import SYSTEM, Origin

# An arbitrary constant naming the lock that serialises appends to the chain on PostgreSQL.
_CHAIN_LOCK = 0x57_6F_72_6B_67_61_74_65  # "Workgate"

_SECRET_KEY = re.compile(r"secret|password|passwd|token|ticket|otp|api_key|authorization", re.I)
REDACTED = "[redacted]"


def redact(value):
    """Replace the value of any key that names a secret, at any depth, and spell every other
    value as the database gives it back: strings as storable, numbers as
    chain.stored_number (so the hash computed before the insert is that of the row as read)."""
    if isinstance(value, dict):
        return {
            storable(str(key)): (REDACTED if _SECRET_KEY.search(str(key)) else redact(item))
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, float):
        return stored_number(value)
    return value


# A UTF-16 surrogate on its own (json.loads makes one of "\\ud800"): no character, which
# PostgreSQL refuses.
_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")


def storable(text: str) -> str:
    """`text` as PostgreSQL can store it: a NUL (which a caller can put in an id it asks for)
    or a lone surrogate (in a model's tool-call arguments, say) shows as U+FFFD instead of
    failing the entry and the change it describes."""
    return _LONE_SURROGATE.sub("\ufffd", text.replace("\x00", "\ufffd"))


def _stored_ip(ip: str | None) -> str | None:
    """`ip` spelled as the database gives it back (`2001:DB8::0:1` reads back as `2001:db8::1`),
    so the hash computed before the insert still matches the row; None for a non-address."""
    if not ip:
        return None
    try:
        address = ipaddress.ip_address(ip)
        return clean_ipv6_address(ip) if address.version == 6 else str(address)
    except (ValueError, ValidationError):
        return None


# Links, hashes and inserts one entry under the chain lock (migration 0003).
_APPEND = (
    "SELECT entry_id, entry_prev_hash, entry_hash FROM audit_entry_append("
    "%s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s::inet, %s, %s)"
)
# The same after a change (an INSERT or UPDATE): the lock's key depends on the change's result,
# so the change runs first and takes its rows' locks before the chain's lock, in the order of
# every other writer (a row, then the chain). PostgreSQL would otherwise finish a change the
# query does not read after the query itself: with the chain's lock held while the change
# waits for a row, every audited write of the gateway would wait too, and a writer holding
# that row and waiting for the chain would deadlock with it.
_APPEND_AFTER = (
    "WITH changed AS ({change} RETURNING 1), done AS (SELECT count(*) AS n FROM changed) "
    "SELECT a.entry_id, a.entry_prev_hash, a.entry_hash FROM done CROSS JOIN LATERAL "
    "audit_entry_append("
    "%s + 0 * done.n, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s::inet, %s, %s) AS a"
)


def _append_on_postgresql(entry: AuditEntry, *, with_change: tuple[str, list] | None = None):
    statement, params = _APPEND, []
    if with_change is not None:
        change, params = with_change
        statement = _APPEND_AFTER.replace("{change}", change)
    with connection.cursor() as cursor:
        cursor.execute(
            statement,
            [
                *params,
                _CHAIN_LOCK,
                GENESIS,
                canonical(entry),
                entry.created_at,
                entry.actor_id,
                entry.actor_email,
                entry.action,
                entry.resource,
                json.dumps(entry.details),  # as the JSONField would store it
                entry.ip_address,
                entry.user_agent,
                entry.success,
            ],
        )
        entry.pk, entry.prev_hash, entry.hash = cursor.fetchone()
    entry._state.adding = False
    entry._state.db = connection.alias


def _entry(
    *,
    action: str,
    actor=None,
    resource: str = "",
    details: dict | None = None,
    origin: Origin = SYSTEM,
    success: bool = True,
) -> AuditEntry:
    """An entry not yet on the chain: all that does not depend on the previous entry."""
    return AuditEntry(
        created_at=timezone.now(),
        actor=actor if actor is not None and actor.is_authenticated else None,
        actor_email=getattr(actor, "email", "") or "",
        action=action,
        resource=storable(resource),
        details=redact(details or {}),
        ip_address=_stored_ip(origin.ip),
        user_agent=storable(origin.user_agent[:512]),
        success=success,
    )


def record(**fields) -> AuditEntry:
    """Append one entry to the chain: `action`, and optionally `actor`, `resource`, `details`,
    `origin` and `success` (see _entry).

    The chain lock is held until the surrounding transaction commits, so entries are linked in
    commit order even with many writers; if the change rolls back, so does its entry. All that
    does not depend on the previous entry is prepared before the lock is taken: on PostgreSQL
    the locked part is one statement and the commit, so concurrent writers queue on the chain
    for as little as possible. Outside any transaction on PostgreSQL the entry is that one
    statement, which the server commits as it ends (no BEGIN and COMMIT round trips, and the
    lock is never held across a round trip to this process). `created_at` is when record() was
    called; the chain's order is the entries' ids.
    """
    return _append(None, fields)


def record_created(row: models.Model, **fields) -> AuditEntry:
    """Insert `row` (a new model instance) and append its entry, atomically.

    The row is inserted as the database gets it: not through save() (no signals), and only for
    a model whose columns all come from Python (no database-generated key to read back).
    """
    model = type(row)
    if model._meta.db_returning_fields:
        raise TypeError(f"{model.__name__} has database-generated fields: use record()")
    query = InsertQuery(model)
    query.insert_values(model._meta.local_concrete_fields, [row])  # every column: none generated
    [(sql, params)] = query.get_compiler(connection=connection).as_sql()
    entry = _append((sql, list(params)), fields)
    row._state.adding = False
    row._state.db = connection.alias
    return entry


def record_updated(rows: models.QuerySet, values: dict, **fields) -> AuditEntry:
    """`rows.update(**values)` and append the entry, atomically: on PostgreSQL outside any
    transaction, one statement (see record)."""
    if rows.query.is_sliced:  # as update() refuses it: the slice would be ignored
        raise TypeError("Cannot update a query once a slice has been taken.")
    query = rows.query.chain(UpdateQuery)
    query.add_update_values(values)
    sql, params = query.get_compiler(connection=connection).as_sql()
    return _append((sql, list(params)), fields)


def _append(change: tuple[str, list] | None, fields: dict) -> AuditEntry:
    """Run `change` (SQL and its parameters, or nothing) and append the entry of `fields`, in
    one statement where the server can commit it as it ends, else in one transaction.

    A change that does not depend on the previous entry is prepared before the lock is taken;
    an entry that cannot be written fails the change it describes (no savepoint: two more round
    trips, one under the lock)."""
    entry = _entry(**fields)
    if connection.vendor == "postgresql" and connection.get_autocommit():
        _append_on_postgresql(entry, with_change=change)
        return entry
    with transaction.atomic(savepoint=False):
        if change is not None:
            with connection.cursor() as cursor:
                cursor.execute(*change)
        if connection.vendor == "postgresql":
            _append_on_postgresql(entry)
        else:
            # SQLite runs every transaction IMMEDIATE (see settings): writers are serialised.
            last = AuditEntry.objects.order_by("-id").values_list("hash", flat=True).first()
            entry.prev_hash = last or GENESIS
            entry.hash = entry_hash(entry.prev_hash, entry)
            entry.save(force_insert=True)
    return entry
