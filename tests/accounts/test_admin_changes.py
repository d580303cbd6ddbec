"""Changes made in the Django admin to accounts, groups and the assistant's records go on the
audit chain with the change they made (never a value typed in), and an administrator can reset
a person's lost second factor."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth.models import Group, Permission
from django.db import IntegrityError, transaction
from rest_framework.test import APIClient

from accounts.connections import account_group
from accounts.models import Profile, User
from accounts.tokens import issue_tokens
from audit.models import AuditEntry
from audit.selectors import audit_chain_first_break
from sessions_app.models import WorkspaceSession
from streaming.models import Assistant, Institution, Membership
from tests.support.admin import reset_mfa, user_form
from tests.support.sessions import launch
from tests.support.signin import PASSWORD, enrol, sign_in
from tests.support.workspaces import make_web_workspace

pytestmark = pytest.mark.django_db


def test_making_someone_an_administrator_is_audited(site, superuser, user):
    group = Group.objects.get(name="Workgate administrators")

    response = site.post(
        f"/admin/accounts/user/{user.pk}/change/",
        user_form(user, is_staff="on", groups=[group.pk]),
    )

    assert response.status_code == 302
    user.refresh_from_db()
    assert user.is_staff and list(user.groups.all()) == [group]
    entry = AuditEntry.objects.get(action="admin_change")
    assert entry.actor == superuser
    assert entry.resource == f"user:{user.pk}"
    assert entry.details["object"] == user.email
    [change] = entry.details["changes"]
    assert {"Staff status", "Groups"} <= set(change["changed"]["fields"])
    assert audit_chain_first_break() is None


def test_a_password_set_in_the_admin_is_audited_without_the_password(site, superuser, user):
    new_password = "A-brand-new-passphrase-42"

    response = site.post(
        f"/admin/accounts/user/{user.pk}/password/",
        {"password1": new_password, "password2": new_password, "usable_password": "true"},
    )

    assert response.status_code == 302
    user.refresh_from_db()
    assert user.check_password(new_password)
    entry = AuditEntry.objects.get(action="admin_change")
    assert entry.resource == f"user:{user.pk}"
    assert new_password not in str(entry.details)
    assert entry.details["changes"]  # "Changed password."


def test_group_permissions_changed_in_the_admin_are_audited(site, superuser):
    permission = Permission.objects.get(codename="change_workspacesession")

    response = site.post(
        "/admin/auth/group/add/", {"name": "Help desk", "permissions": [permission.pk]}
    )

    assert response.status_code == 302
    group = Group.objects.get(name="Help desk")
    assert list(group.permissions.all()) == [permission]
    entry = AuditEntry.objects.get(action="admin_add")
    assert (entry.actor, entry.resource) == (superuser, f"group:{group.pk}")
    assert entry.details["object"] == "Help desk"


def test_deleting_assistant_records_in_bulk_is_audited_per_record(site, superuser):
    kept = Assistant.objects.create(name="Kept", provider="builtin")
    doomed = [Assistant.objects.create(name=f"Old {n}", provider="builtin") for n in range(2)]

    response = site.post(
        "/admin/streaming/assistant/",
        {
            "action": "delete_selected",
            "_selected_action": [str(a.pk) for a in doomed],
            "post": "yes",
        },
    )

    assert response.status_code == 302
    assert list(Assistant.objects.all()) == [kept]
    entries = AuditEntry.objects.filter(action="admin_delete").order_by("id")
    assert [e.resource for e in entries] == [f"assistant:{a.pk}" for a in doomed]
    assert all(e.actor == superuser for e in entries)


def test_memberships_changed_on_their_institutions_page_get_an_entry_each(
    site, superuser, user, other_user, admin_user
):
    institution = Institution.objects.create(name="Physics")
    kept = Membership.objects.create(institution=institution, user=user)
    removed = Membership.objects.create(institution=institution, user=other_user)
    form = {
        "name": "Physics",
        "display_thinking_details": "on",
        "display_tool_execution": "on",
        "memberships-TOTAL_FORMS": "3",
        "memberships-INITIAL_FORMS": "2",
        "memberships-MIN_NUM_FORMS": "0",
        "memberships-MAX_NUM_FORMS": "1000",
        "memberships-0-id": kept.pk,
        "memberships-0-institution": institution.pk,
        "memberships-0-user": superuser.pk,
        "memberships-0-role": "admin",
        "memberships-1-id": removed.pk,
        "memberships-1-institution": institution.pk,
        "memberships-1-user": other_user.pk,
        "memberships-1-role": "member",
        "memberships-1-DELETE": "on",
        "memberships-2-institution": institution.pk,
        "memberships-2-user": admin_user.pk,
        "memberships-2-role": "member",
    }

    response = site.post(f"/admin/streaming/institution/{institution.pk}/change/", form)

    assert response.status_code == 302
    added = Membership.objects.get(user=admin_user)
    moved = Membership.objects.get(pk=kept.pk)
    assert (moved.user, moved.role) == (superuser, "admin")
    assert not Membership.objects.filter(pk=removed.pk).exists()
    entries = AuditEntry.objects.order_by("id")
    via = f"institution:{institution.pk}"
    assert [(e.action, e.resource, e.details.get("via")) for e in entries] == [
        ("admin_add", f"membership:{added.pk}", via),
        ("admin_change", f"membership:{kept.pk}", via),
        ("admin_delete", f"membership:{removed.pk}", via),
        ("admin_change", via, None),
    ]
    assert entries[1].details["changes"] == [{"changed": {"fields": ["User", "Role"]}}]
    # The membership moved from one person to another: the entry names both.
    assert entries[1].details["was"] == f"{user} in Physics (member)"
    assert entries[1].details["object"] == f"{superuser} in Physics (admin)"
    assert entries[2].details["object"] == f"{other_user} in Physics (member)"
    assert {e.actor for e in entries} == {superuser}
    assert audit_chain_first_break() is None


def test_deleting_an_institution_records_what_went_with_it(site, superuser, user):
    institution = Institution.objects.create(name="Physics")
    Membership.objects.create(institution=institution, user=user)
    Assistant.objects.create(name="Tutor", provider="builtin", institution=institution)

    site.post(f"/admin/streaming/institution/{institution.pk}/delete/", {"post": "yes"})

    assert not Institution.objects.filter(pk=institution.pk).exists()
    entry = AuditEntry.objects.get(action="admin_delete")
    assert (entry.actor, entry.resource) == (superuser, f"institution:{institution.pk}")
    assert entry.details == {
        "object": "Physics",
        "deleted": {
            "streaming.Institution": 1,
            "streaming.Membership": 1,
            "streaming.Assistant": 1,
        },
    }


class TestMfaReset:
    def test_an_administrator_resets_a_lost_phone_and_the_person_signs_in_with_the_password(
        self, site, superuser, api, anon, user
    ):
        enrol(api)
        assert sign_in(anon, user.email).json()["code"] == "mfa_required"

        response = reset_mfa(site, user)

        assert "Two-step sign-in reset for 1 account(s)." in response.content.decode()
        profile = Profile.objects.get(user=user)
        assert (profile.mfa_enabled, profile.totp_secret, profile.mfa_enabled_at) == (
            False,
            "",
            None,
        )
        entry = AuditEntry.objects.get(action="mfa_reset")
        assert (entry.actor, entry.resource) == (superuser, f"user:{user.pk}")
        assert entry.details == {"email": user.email, "was_enabled": True}
        signed_in = sign_in(anon, user.email)
        assert signed_in.status_code == 200
        assert signed_in.json()["token"]

    def test_an_account_without_two_step_sign_in_is_left_alone(self, site, user):
        response = reset_mfa(site, user)

        assert "None of those accounts had two-step sign-in." in response.content.decode()
        assert not AuditEntry.objects.filter(action="mfa_reset").exists()

    def test_only_a_superuser_resets_a_superusers_second_factor(
        self, client, staff_with, superuser, enable_mfa
    ):
        enable_mfa(superuser)
        editor = staff_with("accounts.view_user", "accounts.change_user")
        client.force_login(editor)

        response = reset_mfa(client, superuser)

        assert "1 administrator account(s) left unchanged" in response.content.decode()
        assert Profile.objects.get(user=superuser).mfa_enabled is True
        assert not AuditEntry.objects.filter(action="mfa_reset").exists()

    def test_someone_who_may_only_view_accounts_cannot_reset(
        self, client, staff_with, user, enable_mfa
    ):
        enable_mfa(user)
        client.force_login(staff_with("accounts.view_user"))

        reset_mfa(client, user)

        assert Profile.objects.get(user=user).mfa_enabled is True
        assert not AuditEntry.objects.filter(action="mfa_reset").exists()


def test_the_password_is_unchanged_by_an_mfa_reset(site, user, enable_mfa):
    enable_mfa(user)

    site.post("/admin/accounts/user/", {"action": "reset_mfa", "_selected_action": [user.pk]})

    assert User.objects.get(pk=user.pk).check_password(PASSWORD)


class TestAccountEditorWhoIsNotSuperuser:
    """`accounts.change_user` given to a non-superuser covers ordinary accounts only."""

    @pytest.fixture
    def editor(self, client, staff_with):
        editor = staff_with("accounts.view_user", "accounts.change_user")
        client.force_login(editor)
        return editor

    def test_it_cannot_set_an_administrators_password(self, client, editor, admin_user):
        response = client.post(
            f"/admin/accounts/user/{admin_user.pk}/password/",
            {"password1": "Taken-over-123!", "password2": "Taken-over-123!"},
        )

        assert response.status_code == 403
        assert User.objects.get(pk=admin_user.pk).check_password(PASSWORD)
        assert not AuditEntry.objects.exists()

    def test_it_cannot_reset_an_administrators_second_factor(
        self, client, editor, admin_user, enable_mfa
    ):
        enable_mfa(admin_user)

        response = reset_mfa(client, admin_user)

        assert "1 administrator account(s) left unchanged" in response.content.decode()
        assert Profile.objects.get(user=admin_user).mfa_enabled is True

    def test_it_resets_an_ordinary_accounts_second_factor(self, client, editor, user, enable_mfa):
        enable_mfa(user)

        reset_mfa(client, user)

        assert Profile.objects.get(user=user).mfa_enabled is False
        assert AuditEntry.objects.get(action="mfa_reset").actor == editor

    def test_it_cannot_grant_itself_permissions_through_a_group(self, client, staff_with):
        desk = Group.objects.create(name="Help desk")
        holder = staff_with("auth.view_group", "auth.change_group", "auth.add_group")
        holder.groups.add(desk)
        client.force_login(holder)
        everything = Permission.objects.get(codename="delete_workspace")

        changed = client.post(
            f"/admin/auth/group/{desk.pk}/change/",
            {"name": "Help desk", "permissions": [everything.pk]},
        )
        added = client.post("/admin/auth/group/add/", {"name": "Mine"})

        assert changed.status_code == added.status_code == 403
        assert not desk.permissions.exists()
        assert not Group.objects.filter(name="Mine").exists()
        assert not User.objects.get(pk=holder.pk).has_perm("workspaces.delete_workspace")

    def test_it_cannot_delete_an_administrator(self, client, editor, admin_user, staff_with):
        editor.user_permissions.add(Permission.objects.get(codename="delete_user"))

        response = client.post(f"/admin/accounts/user/{admin_user.pk}/delete/", {"post": "yes"})

        assert response.status_code == 403
        assert User.objects.filter(pk=admin_user.pk).exists()
        assert not AuditEntry.objects.exists()

    def test_it_cannot_set_its_own_password_without_the_old_one(self, client, editor):
        response = client.post(
            f"/admin/accounts/user/{editor.pk}/password/",
            {"password1": "Taken-over-123!", "password2": "Taken-over-123!"},
        )

        assert response.status_code == 403
        assert User.objects.get(pk=editor.pk).check_password(PASSWORD)


def test_a_password_change_whose_audit_entry_fails_is_rolled_back(site, user, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("the audit chain is unavailable")

    monkeypatch.setattr("audit.admin_tools.audit.record", broken)

    with pytest.raises(RuntimeError):
        site.post(
            f"/admin/accounts/user/{user.pk}/password/",
            {"password1": "Another-pass-77", "password2": "Another-pass-77"},
        )

    assert User.objects.get(pk=user.pk).check_password(PASSWORD)


def test_a_bulk_delete_whose_audit_entry_fails_deletes_nothing(site, monkeypatch):
    doomed = [Assistant.objects.create(name=f"Old {n}", provider="builtin") for n in range(2)]
    calls = []

    def fails_second(**kwargs):
        calls.append(kwargs)
        if len(calls) == 2:
            raise RuntimeError("the audit chain is unavailable")

    monkeypatch.setattr("audit.admin_tools.audit.record", fails_second)

    with pytest.raises(RuntimeError):
        site.post(
            "/admin/streaming/assistant/",
            {
                "action": "delete_selected",
                "_selected_action": [str(a.pk) for a in doomed],
                "post": "yes",
            },
        )

    assert Assistant.objects.count() == 2


class TestOwnAccountInTheAdmin:
    def test_changing_ones_password_on_the_admins_page_is_audited(self, client, admin_user):
        client.force_login(admin_user)

        response = client.post(
            "/admin/password_change/",
            {
                "old_password": PASSWORD,
                "new_password1": "A-new-passphrase-99",
                "new_password2": "A-new-passphrase-99",
            },
        )

        assert response.status_code == 302
        assert User.objects.get(pk=admin_user.pk).check_password("A-new-passphrase-99")
        entry = AuditEntry.objects.get(action="password_changed")
        assert (entry.actor, entry.resource) == (admin_user, f"user:{admin_user.pk}")
        assert "A-new-passphrase-99" not in str(entry.details)

    def test_a_wrong_old_password_changes_and_records_nothing(self, client, admin_user):
        client.force_login(admin_user)

        response = client.post(
            "/admin/password_change/",
            {
                "old_password": "wrong",
                "new_password1": "X-y-z-123456",
                "new_password2": "X-y-z-123456",
            },
        )

        assert response.status_code == 200
        assert User.objects.get(pk=admin_user.pk).check_password(PASSWORD)
        assert not AuditEntry.objects.filter(action="password_changed").exists()

    def test_signing_out_of_the_admin_is_audited(self, client, admin_user):
        client.force_login(admin_user)

        response = client.post("/admin/logout/")

        assert response.status_code == 302
        assert "_auth_user_id" not in client.session
        assert AuditEntry.objects.get(action="logout").actor == admin_user


NEW_ACCOUNT = {
    "password1": "Pw-123456789",
    "password2": "Pw-123456789",
    "usable_password": "true",
    "profile-TOTAL_FORMS": "0",
    "profile-INITIAL_FORMS": "0",
    "profile-MIN_NUM_FORMS": "0",
    "profile-MAX_NUM_FORMS": "1",
}


class TestEmailCase:
    def test_a_case_variant_of_an_existing_address_is_refused_in_the_admin(self, site, user):
        response = site.post(
            "/admin/accounts/user/add/",
            {
                "email": "Alice@Example.com",
                **NEW_ACCOUNT,
            },
        )

        assert response.status_code == 200  # the form again, with its error
        assert "An account with this email address already exists." in response.content.decode()
        assert User.objects.filter(email__iexact="alice@example.com").count() == 1
        assert not AuditEntry.objects.filter(action="admin_add").exists()

    def test_an_address_typed_with_capitals_is_stored_lowercase_and_signs_in(self, site, anon):
        site.post(
            "/admin/accounts/user/add/",
            {"email": "Bob@Example.COM", **NEW_ACCOUNT},
        )

        assert User.objects.filter(email="bob@example.com").exists()
        signed_in = anon.post(
            "/api/auth/signin",
            {"email": "BOB@example.com", "password": "Pw-123456789"},
            format="json",
        )
        assert signed_in.status_code == 200

    def test_an_account_is_found_by_its_address_in_any_case(self, user):
        assert User.objects.get_by_natural_key(" ALICE@Example.com ") == user

    def test_the_database_refuses_a_case_variant_whatever_writes_it(self, user, make_user):
        other = make_user("x@example.com")

        with pytest.raises(IntegrityError), transaction.atomic():
            # update() skips save(): only the constraint stands in the way.
            User.objects.filter(pk=other.pk).update(email="ALICE@example.com")


class TestTurningAnAccountOff:
    def test_it_ends_the_accounts_live_sessions_and_its_tokens_stop_working(
        self, site, superuser, user, api, other_user, client_for, django_capture_on_commit_callbacks
    ):
        wiki = make_web_workspace(id="ws-wiki0001")
        mine = launch(api, wiki.id).json()["session_id"]
        theirs = launch(client_for(other_user), wiki.id).json()["session_id"]

        with django_capture_on_commit_callbacks(execute=True):
            response = site.post(
                f"/admin/accounts/user/{user.pk}/change/", user_form(user, is_active=None)
            )

        assert response.status_code == 302
        assert User.objects.get(pk=user.pk).is_active is False
        ended = WorkspaceSession.objects.get(pk=mine)
        assert (ended.status, ended.end_reason) == ("terminated", "account_disabled")
        assert WorkspaceSession.objects.get(pk=theirs).status != "terminated"
        terminate = AuditEntry.objects.get(action="terminate_session")
        assert (terminate.actor, terminate.resource) == (superuser, f"session:{mine}")
        assert AuditEntry.objects.get(action="admin_change").resource == f"user:{user.pk}"
        assert api.get("/api/auth/me").status_code == 401

    def test_it_ends_the_sessions_and_tells_their_relays_and_sockets_once_committed(
        self, site, user, other_user, api, django_capture_on_commit_callbacks
    ):
        wiki = make_web_workspace(id="ws-wiki0001")
        mine = launch(api, wiki.id).json()["session_id"]
        layer = get_channel_layer()
        relay = async_to_sync(layer.new_channel)()  # stands where a viewer's relay listens
        async_to_sync(layer.group_add)(WorkspaceSession.objects.get(pk=mine).group_name, relay)
        sockets = {}  # stand where the Socket.IO sockets of each account listen
        for account in (user, other_user):
            sockets[account] = async_to_sync(layer.new_channel)()
            async_to_sync(layer.group_add)(account_group(account.pk), sockets[account])

        with django_capture_on_commit_callbacks(execute=True):
            response = site.post(
                f"/admin/accounts/user/{user.pk}/change/",
                user_form(user, is_active=None),
                follow=True,
            )

        assert "1 live session(s) of alice@example.com ended." in response.content.decode()
        told = async_to_sync(asyncio.wait_for)(layer.receive(relay), 5)
        assert told == {"type": "session.ended", "reason": "account_disabled", "session_id": mine}
        told = async_to_sync(asyncio.wait_for)(layer.receive(sockets[user]), 5)
        assert told == {"type": "account.signed_out", "user_id": str(user.pk)}
        with pytest.raises(TimeoutError):  # the other account's sockets hear nothing
            async_to_sync(asyncio.wait_for)(layer.receive(sockets[other_user]), 0.2)

    def test_turning_it_on_again_brings_back_no_token_or_browser_session(
        self, site, superuser, user, anon, browser_for
    ):
        """An account turned off because it was compromised and on again later (the password
        unchanged): what the intruder held stays dead."""
        tokens = issue_tokens(user, mfa=False)
        browser = browser_for(user)
        client = APIClient()
        client.credentials(HTTP_X_ACCESS_TOKEN=tokens["token"])

        site.post(f"/admin/accounts/user/{user.pk}/change/", user_form(user, is_active=None))
        site.post(f"/admin/accounts/user/{user.pk}/change/", user_form(user, is_active="on"))

        assert User.objects.get(pk=user.pk).is_active is True
        me = client.get("/api/auth/me")
        assert (me.status_code, me.json()["code"]) == (401, "signed_out")
        refreshed = anon.post("/api/auth/refresh", {"refresh": tokens["refresh"]}, format="json")
        assert refreshed.status_code == 401
        assert browser.get("/").status_code == 302  # back to the sign-in page
        entry = AuditEntry.objects.get(action="signed_out_everywhere")
        assert (entry.actor, entry.resource) == (superuser, f"user:{user.pk}")
        # The person signs in again with the password and carries on.
        assert (
            anon.post(
                "/api/auth/signin", {"email": user.email, "password": PASSWORD}, format="json"
            ).status_code
            == 200
        )

    def test_an_account_with_sessions_can_be_turned_off_but_not_deleted(self, site, user, api):
        mine = launch(api, make_web_workspace(id="ws-wiki0001").id).json()["session_id"]

        response = site.post(f"/admin/accounts/user/{user.pk}/delete/", {"post": "yes"})

        assert response.status_code == 403  # its sessions are view-only records
        assert User.objects.filter(pk=user.pk).exists()
        assert WorkspaceSession.objects.get(pk=mine).status != "terminated"
        assert not AuditEntry.objects.filter(action="admin_delete").exists()

    def test_other_changes_leave_the_sessions_alone(self, site, user, api):
        wiki = make_web_workspace(id="ws-wiki0001")
        mine = launch(api, wiki.id).json()["session_id"]

        response = site.post(
            f"/admin/accounts/user/{user.pk}/change/", user_form(user, first_name="Al")
        )

        assert response.status_code == 302
        assert User.objects.get(pk=user.pk).first_name == "Al"
        assert WorkspaceSession.objects.get(pk=mine).status != "terminated"
        assert not AuditEntry.objects.filter(action="terminate_session").exists()
