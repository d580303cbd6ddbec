"""On PostgreSQL, append an audit entry in one statement: lock the chain, link, hash, insert.

The Python side prepares the entry and its canonical JSON (audit.chain.canonical) before calling
this, so the chain lock, taken here and held until commit, covers one round trip and the commit
instead of a lock, a read, an insert and a savepoint. The hash is the one audit.chain.entry_hash
computes: SHA-256 over the previous hash followed by the canonical JSON, in UTF-8, as hex.

The function is VOLATILE, so the SELECT of the previous hash runs with a snapshot taken after
the lock was granted and sees the entry committed by the lock's previous holder.
"""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION audit_entry_append(
    p_lock bigint,
    p_genesis varchar,
    p_canonical text,
    p_created_at timestamptz,
    p_actor_id bigint,
    p_actor_email varchar,
    p_action varchar,
    p_resource varchar,
    p_details jsonb,
    p_ip_address inet,
    p_user_agent varchar,
    p_success boolean
) RETURNS TABLE (entry_id bigint, entry_prev_hash varchar, entry_hash varchar)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    previous varchar;
BEGIN
    PERFORM pg_advisory_xact_lock(p_lock);
    SELECT e.hash INTO previous FROM audit_auditentry e ORDER BY e.id DESC LIMIT 1;
    previous := COALESCE(previous, p_genesis);
    RETURN QUERY
    INSERT INTO audit_auditentry (created_at, actor_id, actor_email, action, resource, details,
                                  ip_address, user_agent, success, prev_hash, hash)
    VALUES (p_created_at, p_actor_id, p_actor_email, p_action, p_resource, p_details,
            p_ip_address, p_user_agent, p_success, previous,
            encode(sha256(convert_to(previous || p_canonical, 'UTF8')), 'hex'))
    RETURNING id, prev_hash, hash;
END;
$$;
"""

DROP = """
DROP FUNCTION IF EXISTS audit_entry_append(
    bigint, varchar, text, timestamptz, bigint, varchar, varchar, varchar, jsonb, inet, varchar,
    boolean
);
"""


def _on_postgresql(sql):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql, params=None)

    return run


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_append_only_trigger")]

    operations = [migrations.RunPython(_on_postgresql(CREATE), _on_postgresql(DROP))]
