"""Rotating WORKGATE_ENCRYPTION_KEY as deployment.md says: the new key first and the old one
after it, `rotate_secrets` re-encrypts every stored secret, `rotate_secrets --check` says when
the old key may go, and without it every secret still reads."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.db.models import TextField
from django.db.models.functions import Cast
from django.utils import timezone

from accounts.models import Profile
from audit.models import AuditEntry
from core.crypto import encrypted_columns
from sessions_app.models import WorkspaceSession
from tests.support.workspaces import make_web_workspace
from workspaces.models import Workspace

pytestmark = pytest.mark.django_db

OLD, NEW = Fernet.generate_key(), Fernet.generate_key()


def stored(model, field: str) -> list[str]:
    """A column as the database holds it (ciphertext)."""
    raw = model.objects.annotate(raw=Cast(field, output_field=TextField()))
    return list(raw.order_by("pk").values_list("raw", flat=True))


@pytest.fixture
def secrets_under_the_old_key(settings, user):
    settings.WORKGATE_ENCRYPTION_KEYS = [OLD]
    workspace = make_web_workspace(
        vnc_secret="kasm-secret",
        rfb_password="rfb-secret",
        container_environment='{"LICENSE_KEY":"licence-secret"}',
        app_credential_header="Authorization",
        app_credential="Bearer app-secret",
    )
    Profile.objects.update_or_create(user=user, defaults={"totp_secret": "JBSWY3DPEHPK3PXP"})
    WorkspaceSession.objects.create(
        user=user,
        workspace=workspace,
        workspace_name=workspace.name,
        workspace_type=workspace.type,
        started_at=timezone.now(),
        last_seen_at=timezone.now(),
        upstream_secret="upstream-secret",
        rfb_password="session-rfb",
    )
    return {
        (Workspace, "vnc_secret"): "kasm-secret",
        (Workspace, "rfb_password"): "rfb-secret",
        (Workspace, "container_environment"): '{"LICENSE_KEY":"licence-secret"}',
        (Workspace, "app_credential"): "Bearer app-secret",
        (Profile, "totp_secret"): "JBSWY3DPEHPK3PXP",
        (WorkspaceSession, "upstream_secret"): "upstream-secret",
        (WorkspaceSession, "rfb_password"): "session-rfb",
    }


def test_every_encrypted_column_is_found():
    found = {(model, field.name) for model, field in encrypted_columns()}
    assert found == {
        (Workspace, "vnc_secret"),
        (Workspace, "rfb_password"),
        (Workspace, "container_environment"),
        (Workspace, "app_credential"),
        (Profile, "totp_secret"),
        (WorkspaceSession, "upstream_secret"),
        (WorkspaceSession, "rfb_password"),
    }


def test_a_rotation_re_encrypts_every_secret_and_the_old_key_can_then_go(
    settings, secrets_under_the_old_key
):
    before = {column: stored(*column) for column in secrets_under_the_old_key}
    settings.WORKGATE_ENCRYPTION_KEYS = [NEW, OLD]

    with pytest.raises(CommandError, match="7 stored secrets are not under the first key"):
        call_command("rotate_secrets", "--check")
    call_command("rotate_secrets")
    call_command("rotate_secrets", "--check")  # no error: none is left behind

    settings.WORKGATE_ENCRYPTION_KEYS = [NEW]
    for (model, field), secret in secrets_under_the_old_key.items():
        assert stored(model, field) != before[model, field]
        assert Fernet(NEW).decrypt(stored(model, field)[0].encode()).decode() == secret
        assert getattr(model.objects.get(), field) == secret
    entry = AuditEntry.objects.get(action="secrets_rotated")
    assert entry.details == {"rotated": 7}
    assert "secret" not in str(entry.details).replace("secrets", "")


def test_a_second_rotation_changes_nothing(settings, secrets_under_the_old_key):
    settings.WORKGATE_ENCRYPTION_KEYS = [NEW, OLD]
    call_command("rotate_secrets")
    after_first = {column: stored(*column) for column in secrets_under_the_old_key}

    call_command("rotate_secrets")

    assert {column: stored(*column) for column in secrets_under_the_old_key} == after_first
    latest = AuditEntry.objects.filter(action="secrets_rotated").order_by("id").last()
    assert latest.details == {"rotated": 0}


def test_without_the_old_key_before_the_rotation_nothing_is_rewritten(
    settings, secrets_under_the_old_key
):
    """Removing the old key first is the mistake step 3 warns of: the command refuses, and
    what is stored stays as it was, readable again once the key is back."""
    before = {column: stored(*column) for column in secrets_under_the_old_key}
    settings.WORKGATE_ENCRYPTION_KEYS = [NEW]

    with pytest.raises(ImproperlyConfigured, match="WORKGATE_ENCRYPTION_KEY"):
        call_command("rotate_secrets")

    assert {column: stored(*column) for column in secrets_under_the_old_key} == before
    settings.WORKGATE_ENCRYPTION_KEYS = [NEW, OLD]
    assert Workspace.objects.get().vnc_secret == "kasm-secret"


def test_one_secret_no_key_opens_leaves_every_other_as_it_was(settings, secrets_under_the_old_key):
    """All or nothing: a session's secret under a key gone from the list stops the rotation
    after other columns were rewritten in the same transaction, which then rolls back."""
    settings.WORKGATE_ENCRYPTION_KEYS = [Fernet.generate_key()]
    WorkspaceSession.objects.update(upstream_secret="written under a lost key")
    settings.WORKGATE_ENCRYPTION_KEYS = [NEW, OLD]
    before = {column: stored(*column) for column in secrets_under_the_old_key}

    with pytest.raises(ImproperlyConfigured, match=r"WorkspaceSession\.upstream_secret"):
        call_command("rotate_secrets")

    assert {column: stored(*column) for column in secrets_under_the_old_key} == before
    assert not AuditEntry.objects.filter(action="secrets_rotated").exists()
