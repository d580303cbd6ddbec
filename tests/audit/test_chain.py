"""The tamper-evident chain: concurrent writers, an edited row found, the append-only trigger."""

from __future__ import annotations

import hashlib
import itertools
import math
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction

from audit import services as audit
from audit.chain import GENESIS, canonical, entry_hash
from audit.models import AuditEntry
from audit.selectors import audit_chain_breaks, audit_chain_first_break

WRITERS = 20
ENTRIES_EACH = 5


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_writers_append_one_valid_chain(user):
    barrier = threading.Barrier(WRITERS, timeout=60)

    def writer(index):
        try:
            barrier.wait()
            for n in range(ENTRIES_EACH):
                with transaction.atomic():
                    audit.record(action="test_write", actor=user, details={"writer": index, "n": n})
        finally:
            connection.close()

    with ThreadPoolExecutor(WRITERS) as pool:
        list(pool.map(writer, range(WRITERS)))

    entries = list(AuditEntry.objects.order_by("id"))
    assert len(entries) == WRITERS * ENTRIES_EACH
    assert entries[0].prev_hash == GENESIS
    for previous, entry in itertools.pairwise(entries):
        assert entry.prev_hash == previous.hash
    assert len({entry.hash for entry in entries}) == len(entries)
    assert audit_chain_first_break() is None
    call_command("verify_audit")


@pytest.mark.django_db
def test_each_hash_is_sha256_of_the_previous_hash_and_the_canonical_entry(user):
    with transaction.atomic():
        first = audit.record(action="one", actor=user, details={"a": 1})
        second = audit.record(action="two", actor=user, resource="workspace:ws-1")

    assert first.hash == hashlib.sha256((GENESIS + canonical(first)).encode()).hexdigest()
    assert second.prev_hash == first.hash
    assert second.hash == hashlib.sha256((first.hash + canonical(second)).encode()).hexdigest()


@pytest.mark.django_db
def test_secrets_in_details_are_redacted_before_hashing(user):
    with transaction.atomic():
        entry = audit.record(
            action="x", actor=user, details={"vnc_secret": "s3cret", "nested": {"ticket": "t"}}
        )

    stored = AuditEntry.objects.get(pk=entry.pk).details
    assert stored == {"vnc_secret": "[redacted]", "nested": {"ticket": "[redacted]"}}


@pytest.fixture
def chain(user):
    with transaction.atomic():
        return [audit.record(action=f"step_{n}", actor=user, details={"n": n}) for n in range(5)]


def tamper(sql: str, params) -> None:
    """Edit the log behind the trigger's back, as someone with direct database access could."""
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditentry DISABLE TRIGGER audit_entry_append_only")
        cursor.execute(sql, params)
        cursor.execute("ALTER TABLE audit_auditentry ENABLE TRIGGER audit_entry_append_only")


@pytest.mark.django_db
def test_verify_audit_passes_an_intact_chain(chain, capsys):
    call_command("verify_audit")

    assert "audit chain intact: 5 entries verified" in capsys.readouterr().out


@pytest.mark.django_db
def test_verify_audit_names_every_edited_entry_not_only_the_first(chain, capsys):
    tamper("UPDATE audit_auditentry SET details = %s WHERE id = %s", ['{"n": 99}', chain[1].pk])
    tamper("UPDATE audit_auditentry SET success = false WHERE id = %s", [chain[3].pk])

    with pytest.raises(CommandError) as failed:
        call_command("verify_audit")

    assert str(failed.value) == f"audit chain broken at 2 entries: {chain[1].pk}, {chain[3].pk}"
    assert failed.value.returncode == 1
    assert capsys.readouterr().err.splitlines() == [
        f"broken entry {chain[1].pk}: hash does not match the entry's contents",
        f"broken entry {chain[3].pk}: hash does not match the entry's contents",
    ]
    assert [b.entry_id for b in audit_chain_breaks()] == [chain[1].pk, chain[3].pk]
    assert audit_chain_first_break().entry_id == chain[1].pk


@pytest.mark.django_db
def test_verify_audit_names_the_entry_after_a_deleted_one(chain, capsys):
    tamper("DELETE FROM audit_auditentry WHERE id = %s", [chain[1].pk])

    with pytest.raises(CommandError, match=f"broken at 1 entry: {chain[2].pk}$"):
        call_command("verify_audit")

    assert capsys.readouterr().err == (
        f"broken entry {chain[2].pk}: prev_hash does not match the previous entry's hash\n"
    )


@pytest.mark.django_db
def test_a_rehashed_edit_still_breaks_the_link_to_the_next_entry(chain):
    edited = chain[3]
    edited.details = {"n": "forged"}
    forged_hash = entry_hash(edited.prev_hash, edited)
    tamper(
        "UPDATE audit_auditentry SET details = %s, hash = %s WHERE id = %s",
        ['{"n": "forged"}', forged_hash, edited.pk],
    )

    with pytest.raises(CommandError, match=f"broken at 1 entry: {chain[4].pk}$"):
        call_command("verify_audit")


# --- Details as PostgreSQL gives them back ---------------------------------------------------

# Numbers jsonb spells otherwise than Python wrote them (1e+16 -> 10000000000000000, -0.0 -> 0.0),
# numbers JSON has no spelling for, and a lone surrogate (both refused by PostgreSQL).
WRITTEN = {
    "n": 1e16,
    "z": -0.0,
    "f": 0.1,
    "huge": -1.5e300,
    "tiny": 5e-324,
    "int": 10**20,
    "nested": [{"nan": math.nan, "inf": math.inf, "ninf": -math.inf}],
    "text": "caf\u00e9 \ud800 \x00",
}
STORED = {
    "n": 10**16,
    "z": 0.0,
    "f": 0.1,
    "huge": -int(1.5e300),
    "tiny": 5e-324,
    "int": 10**20,
    "nested": [{"nan": "NaN", "inf": "Infinity", "ninf": "-Infinity"}],
    "text": "caf\u00e9 \ufffd \ufffd",
}


@pytest.mark.django_db
def test_details_are_stored_as_read_back_and_the_entry_verifies(user, capsys):
    """The issue's entry: a model's tool-call arguments holding numbers jsonb re-spells."""
    with transaction.atomic():
        written = audit.record(action="tool_call", actor=user, details=WRITTEN)

    read = AuditEntry.objects.get(pk=written.pk)

    assert read.details == written.details == STORED
    assert math.copysign(1, read.details["z"]) == 1.0
    assert [type(read.details[k]) for k in ("n", "z", "f")] == [int, float, float]
    assert canonical(read) == canonical(written)
    assert read.hash == hashlib.sha256((GENESIS + canonical(read)).encode()).hexdigest()
    call_command("verify_audit")
    assert "audit chain intact: 1 entries verified" in capsys.readouterr().out


@pytest.mark.django_db
def test_an_entry_hashed_with_its_numbers_as_written_before_this_change_still_verifies(user):
    """Entries in deployed databases were hashed with the details as their writer spelled them
    and read back re-spelled: each re-spellable number is tried both ways."""
    old = audit._entry(action="tool_call", actor=user)
    old.details = {"n": 1e16, "z": -0.0, "id": 10**17, "f": [0.0, 2.5]}  # as written then
    with transaction.atomic():
        audit._append_on_postgresql(old)  # the append the previous record() made
        audit.record(action="after", actor=user, details={"n": 1})

    read = AuditEntry.objects.get(pk=old.pk)
    assert read.details == {"n": 10**16, "z": 0.0, "id": 10**17, "f": [0.0, 2.5]}
    assert entry_hash(read.prev_hash, read) != read.hash  # as read, it would look edited
    assert audit_chain_first_break() is None
    call_command("verify_audit")


@pytest.mark.django_db
def test_an_edit_of_an_old_re_spelled_entry_is_still_found(user):
    old = audit._entry(action="tool_call", actor=user)
    old.details = {"n": 1e16}
    with transaction.atomic():
        audit._append_on_postgresql(old)
    tamper("UPDATE audit_auditentry SET details = %s WHERE id = %s", ['{"n": 1e17}', old.pk])

    with pytest.raises(CommandError, match=f"broken at 1 entry: {old.pk}$"):
        call_command("verify_audit")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_auditentry SET action = 'nothing' WHERE id = %s",
        "DELETE FROM audit_auditentry WHERE id = %s",
    ],
    ids=["update", "delete"],
)
def test_the_database_refuses_to_update_or_delete_an_entry(chain, statement):
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(statement, [chain[0].pk])

    assert AuditEntry.objects.get(pk=chain[0].pk).action == "step_0"


@pytest.mark.django_db
def test_the_orm_cannot_edit_an_entry_either(chain):
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEntry.objects.filter(pk=chain[0].pk).update(success=False)
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEntry.objects.filter(pk=chain[0].pk).delete()

    assert AuditEntry.objects.count() == 5
