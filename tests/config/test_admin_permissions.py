"""What an administrator may do is the Django permissions it holds, the same in the admin API, the
pages and the Django admin; a staff account holding none can do nothing more than a user."""

from __future__ import annotations

import importlib

import pytest
from django.contrib.auth.models import Group, Permission
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.urls import URLResolver, get_resolver

from accounts.models import User
from audit import services as audit
from audit.models import AuditEntry
from core.permissions import ADMIN_PERMISSIONS, IsAdmin
from sessions_app.models import WorkspaceSession
from tests.support.admin import user_form
from tests.support.sessions import launch
from tests.support.signin import PASSWORD
from tests.support.workspaces import make_web_workspace
from workspaces.apis import AdminWrites
from workspaces.models import Workspace

pytestmark = pytest.mark.django_db


@pytest.fixture
def web_workspace():
    return make_web_workspace(id="ws-webapp01")


@pytest.fixture
def someones_session(api, web_workspace) -> str:
    """A live session of alice (the `user` fixture)."""
    return launch(api, web_workspace.id).json()["session_id"]


@pytest.fixture
def other_audit_entry(other_user):
    return audit.record(action="launch_workspace", actor=other_user, resource="workspace:ws-x")


def admin_views() -> list[tuple[str, type]]:
    """Every API view of the URL conf that asks administrators for permissions, with its path."""
    found = []

    def walk(patterns, prefix=""):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, prefix + str(pattern.pattern))
                continue
            view = getattr(pattern.callback, "cls", None)
            if view and (IsAdmin in view.permission_classes or issubclass(view, AdminWrites)):
                found.append((prefix + str(pattern.pattern), view))

    walk(get_resolver().url_patterns)
    return found


def test_every_admin_view_names_the_permissions_of_every_method_it_handles():
    migration = importlib.import_module("accounts.migrations.0002_administrators_group")
    in_group = {f"{app_label}.{codename}" for app_label, codename in migration.PERMISSIONS}
    assert in_group == set(ADMIN_PERMISSIONS)
    views = admin_views()

    assert len(views) >= 4  # the workspace list, detail and reset, the histories
    for path, view in views:
        handled = {m.upper() for m in view.http_method_names if hasattr(view, m)} - {
            "HEAD",
            "OPTIONS",
        }
        guarded = handled if IsAdmin in view.permission_classes else handled - {"GET"}
        assert guarded <= set(view.admin_permissions), path
        for permissions in view.admin_permissions.values():
            assert set(permissions) <= in_group, path  # the group can do everything


@pytest.mark.parametrize(
    ("method", "path"), [("put", "/api/workspaces/reset"), ("delete", "/api/admin/histories")]
)
def test_a_method_an_admin_route_does_not_have_is_405_for_administrators_only(
    anon, admin_api, client_for, user, method, path
):
    assert getattr(anon, method)(path).status_code == 401
    assert getattr(client_for(user), method)(path).status_code == 403
    response = getattr(admin_api, method)(path)
    assert response.status_code == 405
    assert response.json()["success"] is False


class TestStaffWithoutPermissions:
    """Staff is the role; without permissions it opens no administrative door."""

    def test_the_catalog_shows_it_no_admin_fields(self, staff_with, client_for, web_workspace):
        staff = staff_with()

        workspace = client_for(staff).get("/api/workspaces/ws-webapp01").json()

        assert "vnc_secret_set" not in workspace
        assert "created_at" not in workspace

    def test_it_sees_and_ends_only_its_own_sessions(self, staff_with, client_for, someones_session):
        staff = client_for(staff_with())

        assert staff.get("/api/sessions").json()["results"] == []
        assert staff.get(f"/api/sessions/{someones_session}").status_code == 404
        assert staff.post(f"/api/sessions/{someones_session}/terminate").status_code == 404
        assert WorkspaceSession.objects.get(pk=someones_session).status != "terminated"
        assert not AuditEntry.objects.filter(action="terminate_session").exists()

    def test_it_reads_only_its_own_audit_entries_and_not_the_audit_page(
        self, staff_with, client_for, other_audit_entry, browser_for
    ):
        staff = staff_with()

        assert client_for(staff).get("/api/audit-logs").json()["results"] == []
        page = browser_for(staff)
        assert page.get("/audit").status_code == 403
        assert b'href="/audit"' not in page.get("/sessions").content


@pytest.mark.parametrize(
    ("who", "expected"),
    [
        ("user", []),
        (
            "help desk",
            ["sessions_app.change_workspacesession", "sessions_app.view_workspacesession"],
        ),
        ("administrator", list(ADMIN_PERMISSIONS)),
    ],
)
def test_auth_me_lists_the_admin_permissions_the_account_holds(
    client_for, user, admin_user, staff_with, who, expected
):
    account = {
        "user": lambda: user,
        "help desk": lambda: staff_with("sessions_app.change_workspacesession"),
        "administrator": lambda: admin_user,
    }[who]()

    profile = client_for(account).get("/api/auth/me").json()["profile"]

    assert profile["admin_permissions"] == expected
    assert profile["is_admin"] is (who != "user")


class TestHelpDesk:
    """Staff holding only the session permissions: it sees and ends everyone's sessions, and
    nothing else."""

    @pytest.fixture
    def help_desk(self, staff_with):
        return staff_with(
            "sessions_app.view_workspacesession",
            "sessions_app.change_workspacesession",
        )

    def test_it_sees_and_ends_anyones_session(self, help_desk, client_for, someones_session, user):
        desk = client_for(help_desk)

        listed = [row["id"] for row in desk.get("/api/sessions").json()["results"]]
        response = desk.post(f"/api/sessions/{someones_session}/terminate")

        assert listed == [someones_session]
        assert response.status_code == 200
        session = WorkspaceSession.objects.get(pk=someones_session)
        assert (session.status, session.end_reason) == ("terminated", "admin_terminate")
        entry = AuditEntry.objects.get(action="terminate_session")
        assert entry.actor == help_desk
        assert entry.success is True

    def test_it_cannot_change_the_catalog(self, help_desk, client_for, web_workspace):
        response = client_for(help_desk).delete("/api/workspaces/ws-webapp01")

        assert response.status_code == 403
        assert Workspace.objects.filter(pk="ws-webapp01").exists()

    def test_the_django_admin_agrees(self, help_desk, client):
        client.force_login(help_desk)

        assert client.get("/admin/sessions_app/workspacesession/").status_code == 200
        assert client.get("/admin/workspaces/workspace/add/").status_code == 403


class TestSessionViewer:
    """Staff that may view sessions but not change them: everyone's sessions in sight, none of
    other people's ended."""

    @pytest.fixture
    def viewer(self, staff_with):
        return staff_with("sessions_app.view_workspacesession")

    def test_the_api_shows_the_session_but_refuses_to_end_it(
        self, viewer, client_for, someones_session
    ):
        api = client_for(viewer)

        assert api.get(f"/api/sessions/{someones_session}").status_code == 200
        response = api.post(f"/api/sessions/{someones_session}/terminate")

        assert response.status_code == 403
        assert response.json()["code"] == "admin_required"
        assert WorkspaceSession.objects.get(pk=someones_session).status != "terminated"
        assert not AuditEntry.objects.filter(action="terminate_session").exists()

    def test_the_sessions_page_offers_no_stop_button_and_refuses_a_forged_stop(
        self, viewer, browser_for, someones_session
    ):
        page = browser_for(viewer)

        listing = page.get("/sessions").content.decode()
        stopped = page.post(f"/sessions/{someones_session}/stop", follow=True)

        assert "alice@example.com" in listing
        assert f"/sessions/{someones_session}/stop" not in listing
        assert "Admin access required" in stopped.content.decode()
        assert WorkspaceSession.objects.get(pk=someones_session).status != "terminated"
        assert not AuditEntry.objects.filter(action="terminate_session").exists()


def test_an_auditor_reads_everyones_entries(staff_with, client_for, other_audit_entry):
    auditor = staff_with("audit.view_auditentry")

    entries = client_for(auditor).get("/api/audit-logs").json()["results"]

    assert [entry["id"] for entry in entries] == [other_audit_entry.id]


def test_a_change_permission_grants_the_view_one_as_in_the_django_admin(
    staff_with, client_for, other_audit_entry
):
    editor = staff_with("audit.change_auditentry", "streaming.change_history")

    entries = client_for(editor).get("/api/audit-logs").json()["results"]
    histories = client_for(editor).get("/api/admin/histories")

    assert [entry["id"] for entry in entries] == [other_audit_entry.id]
    assert histories.status_code == 200


def test_permissions_without_the_staff_role_open_nothing(client_for, user, web_workspace):
    user.user_permissions.add(Permission.objects.get(codename="delete_workspace"))

    response = client_for(User.objects.get(pk=user.pk)).delete("/api/workspaces/ws-webapp01")

    assert response.status_code == 403
    assert Workspace.objects.filter(pk="ws-webapp01").exists()


def test_upgrading_puts_existing_staff_in_the_administrators_group(make_user, staff_with):
    """Accounts migration 0002, run on a database with accounts already in it: the staff
    accounts of the time keep what the admin API allowed them; nobody else gains anything."""
    staff = staff_with()
    superuser = make_user(superuser=True)
    plain = make_user()
    migration = importlib.import_module("accounts.migrations.0002_administrators_group")
    Group.objects.filter(name=migration.GROUP).delete()
    state = MigrationExecutor(connection).loader.project_state(
        ("accounts", "0002_administrators_group")
    )

    with connection.schema_editor() as editor:
        migration.create_group(state.apps, editor)

    group = Group.objects.get(name=migration.GROUP)
    assert list(group.user_set.all()) == [staff]
    assert sorted(group.permissions.values_list("codename", flat=True)) == sorted(
        codename for _, codename in migration.PERMISSIONS
    )
    staff = User.objects.get(pk=staff.pk)
    assert staff.has_perms(["workspaces.delete_workspace", "audit.view_auditentry"])
    assert not User.objects.get(pk=plain.pk).get_all_permissions()
    assert superuser.groups.count() == 0


class TestAccountAdministration:
    """Someone allowed to edit accounts in the Django admin, but not a superuser, cannot hand
    out roles or take over a superuser."""

    @pytest.fixture
    def account_editor(self, staff_with, client):
        editor = staff_with("accounts.view_user", "accounts.change_user")
        client.force_login(editor)
        return editor

    def test_it_edits_an_ordinary_account_but_cannot_hand_out_roles(
        self, account_editor, client, user
    ):
        group = Group.objects.get(name="Workgate administrators")

        response = client.post(
            f"/admin/accounts/user/{user.pk}/change/",
            user_form(
                user, first_name="Alicia", is_staff="on", is_superuser="on", groups=[group.pk]
            ),
        )

        user.refresh_from_db()
        assert response.status_code == 302  # saved: the name changed, the roles could not
        assert user.first_name == "Alicia"
        assert (user.is_staff, user.is_superuser, user.groups.count()) == (False, False, 0)

    def test_it_cannot_change_its_own_account(self, account_editor, client):
        response = client.post(
            f"/admin/accounts/user/{account_editor.pk}/change/",
            {"email": account_editor.email, "is_superuser": "on"},
        )

        account_editor.refresh_from_db()
        assert response.status_code == 403
        assert account_editor.is_superuser is False

    def test_it_cannot_set_a_superusers_password(self, account_editor, client, superuser):
        response = client.post(
            f"/admin/accounts/user/{superuser.pk}/password/",
            {"password1": "Taken-over-123!", "password2": "Taken-over-123!"},
        )

        assert response.status_code == 403
        superuser.refresh_from_db()
        assert superuser.check_password(PASSWORD)
