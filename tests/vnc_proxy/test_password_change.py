"""A new password ends everything signed in with the old one, as signing out everywhere does:
tokens, browser sessions, unused desktop tickets and open viewers (test_relay.py), however the
password is set (the admin's forms, `manage.py changepassword`, a shell). Audited as
`signed_out_everywhere`."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from accounts.models import User
from audit.models import AuditEntry
from tests.support.signin import PASSWORD, sign_in
from tests.vnc_proxy.conftest import (
    db,
    refused_with,
    relay_communicator,
    relay_path,
)
from vnc_proxy.models import Ticket

pytestmark = pytest.mark.django_db(transaction=True)

NEW_PASSWORD = "A-brand-new-passphrase-42"


def by_the_admin_form(user, site, monkeypatch):
    response = site.post(
        f"/admin/accounts/user/{user.pk}/password/",
        {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD, "usable_password": "true"},
    )
    assert response.status_code == 302


def by_turning_password_sign_in_off_in_the_admin(user, site, monkeypatch):
    response = site.post(
        f"/admin/accounts/user/{user.pk}/password/",
        {"usable_password": "false", "unset-password": "1"},
    )
    assert response["Location"] == f"/admin/accounts/user/{user.pk}/change/"
    assert not User.objects.get(pk=user.pk).has_usable_password()


def by_the_changepassword_command(user, site, monkeypatch):
    # The command reads the new password twice from the terminal.
    monkeypatch.setattr("getpass.getpass", lambda prompt="": NEW_PASSWORD)
    call_command("changepassword", user.email)


def in_a_shell(user, site, monkeypatch):
    account = User.objects.get(pk=user.pk)
    account.set_password(NEW_PASSWORD)
    account.save()


@pytest.mark.parametrize(
    "change",
    [
        by_the_admin_form,
        by_turning_password_sign_in_off_in_the_admin,
        by_the_changepassword_command,
        in_a_shell,
    ],
)
async def test_a_ticket_minted_before_a_new_password_is_refused_at_the_relay(
    make_runtime, ticket_for, user, site, monkeypatch, change
):
    runtime = await db(make_runtime)(user)
    body = await db(ticket_for)(user, runtime.runtime_id)
    client = APIClient()
    tokens = (await db(sign_in)(client, user.email)).json()

    await db(change)(user, site, monkeypatch)
    code, reason = await refused_with(relay_communicator(relay_path(body)))

    assert (code, reason) == (4401, "ticket expired")  # as after signing out everywhere
    me = await db(client.get)("/api/auth/me", HTTP_X_ACCESS_TOKEN=tokens["token"])
    assert me.status_code == 401

    def entries():
        return (
            AuditEntry.objects.get(action="vnc_connect"),
            AuditEntry.objects.get(action="signed_out_everywhere"),
            User.objects.get(pk=user.pk).sign_in_epoch,
        )

    refusal, ended, epoch = await db(entries)()
    assert (refusal.actor_id, refusal.resource, refusal.success) == (
        user.pk,
        f"session:{runtime.pk}",
        False,
    )
    assert (refusal.details["refused"], refusal.details["close_code"]) == ("ticket expired", 4401)
    assert (ended.actor_id, ended.resource, ended.success) == (None, f"user:{user.pk}", True)
    assert ended.details == {
        "email": user.email,
        "desktop_passes_voided": 1,
        "reason": "password_changed",
    }
    assert epoch == 1


def test_changing_your_own_password_keeps_this_browser_and_ends_the_others(admin_user, browser_for):
    page, other = browser_for(admin_user), browser_for(admin_user)

    response = page.post(
        "/admin/password_change/",
        {
            "old_password": PASSWORD,
            "new_password1": NEW_PASSWORD,
            "new_password2": NEW_PASSWORD,
        },
    )

    assert response.status_code == 302
    assert page.get("/sessions").status_code == 200
    assert other.get("/sessions")["Location"].startswith("/login")
    assert list(AuditEntry.objects.order_by("id").values_list("action", "actor")) == [
        ("signed_out_everywhere", None),
        ("password_changed", admin_user.pk),
    ]


def test_a_password_rehashed_at_sign_in_is_not_a_new_password(
    anon, user, make_runtime, ticket_for, settings
):
    """Django saves a stronger hash of the same password when it checks one: nobody is
    signed out for that."""
    body = ticket_for(user, make_runtime(user).runtime_id)
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.ScryptPasswordHasher",
        *settings.PASSWORD_HASHERS,
    ]

    assert sign_in(anon, user.email).status_code == 200

    account = User.objects.get(pk=user.pk)
    assert account.password.startswith("scrypt$")  # rehashed and saved
    assert account.sign_in_epoch == 0
    assert not AuditEntry.objects.filter(action="signed_out_everywhere").exists()
    ticket = Ticket.objects.get()
    assert ticket.expires_at > ticket.issued_at
    assert body["workspaceId"] == ticket.session.runtime_id
