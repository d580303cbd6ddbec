"""deployment.md's backup and restore on this machine's PostgreSQL: `pg_dump --format=custom`,
`pg_restore` into a fresh database, then `verify_audit` against the copy. The audit chain (its
timestamps, JSON details and the triggers that keep it append-only) and the encrypted secrets
come through the round trip."""

from __future__ import annotations

import subprocess

import psycopg
import pytest
from django.conf import settings
from django.db import transaction

from audit import services as audit
from audit.models import AuditEntry
from core.network import Origin
from tests.support import processes
from tests.support.processes import PYTHON, ROOT
from tests.support.workspaces import make_web_workspace

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def server_url(database: str) -> str:
    return processes.test_database_url().rsplit("/", 1)[0] + f"/{database}"


@pytest.fixture
def restored_url():
    """The name of a fresh database to restore into, dropped afterwards."""
    name = f"{settings.DATABASES['default']['NAME']}_restored"
    with psycopg.connect(server_url("postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
    yield server_url(name)
    with psycopg.connect(server_url("postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def manage(database_url: str, *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYTHON, "manage.py", *arguments],
        env={
            "PATH": "/usr/bin:/bin",
            "DATABASE_URL": database_url,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
        },
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_dump_restored_into_a_fresh_database_verifies_and_keeps_its_secrets(
    restored_url, user, tmp_path
):
    with transaction.atomic():
        audit.record(
            action="login",
            actor=user,
            details={"zeta": 1, "alpha": "é ünïcode", "nested": {"b": [1, 2], "a": None}},
            origin=Origin(ip="2001:db8::1", user_agent="curl/8"),
        )
    workspace = make_web_workspace(vnc_secret="kasm-secret")
    newest = AuditEntry.objects.order_by("id").last()
    dump = tmp_path / "workgate.dump"

    subprocess.run(
        [
            "pg_dump",
            "--format=custom",
            f"--file={dump}",
            f"--dbname={processes.test_database_url()}",
        ],
        check=True,
    )
    subprocess.run(
        ["createdb", f"--maintenance-db={server_url('postgres')}", restored_url.rsplit("/", 1)[1]],
        check=True,
    )
    subprocess.run(["pg_restore", "--no-owner", f"--dbname={restored_url}", str(dump)], check=True)
    verified = manage(restored_url, "verify_audit")
    read_secret = (
        "from workspaces.models import Workspace; "
        f"print(Workspace.objects.get(pk={workspace.pk!r}).vnc_secret)"
    )
    secret = manage(restored_url, "shell", "-c", read_secret)

    assert verified.returncode == 0, verified.stderr
    count = AuditEntry.objects.count()
    assert verified.stdout.strip() == f"audit chain intact: {count} entries verified"
    with psycopg.connect(restored_url) as copy:
        (tail,) = copy.execute(
            "SELECT hash FROM audit_auditentry ORDER BY id DESC LIMIT 1"
        ).fetchone()
        assert tail == newest.hash  # the copy is not missing its tail
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            copy.execute("UPDATE audit_auditentry SET action = 'edited'")
    assert secret.returncode == 0, secret.stderr
    assert secret.stdout.splitlines()[-1] == "kasm-secret"
