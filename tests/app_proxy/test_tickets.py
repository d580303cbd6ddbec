"""POST /api/agents/workspace/app-ticket, and spending the ticket at the app's door
(services.enter, what the proxy's /.workgate/enter calls): single use, 60 seconds, one runtime,
one sign-in."""

from __future__ import annotations

from datetime import timedelta

import jwt
import pytest
from django.db.models import F

from accounts.models import User
from accounts.services import user_sign_out_everywhere
from app_proxy import services
from app_proxy.admission import AppRefused
from app_proxy.models import AppGrant, AppTicket
from audit.models import AuditEntry
from core.network import Origin
from sessions_app.models import WorkspaceSession
from sessions_app.services import EndReason, session_terminate
from tests.app_proxy.conftest import ask_app_ticket, ticket_in
from tests.support.sessions import OVERLAY_IP
from vnc_proxy import tickets
from workspaces.models import Workspace

pytestmark = pytest.mark.django_db


def enter(runtime_id: str, ticket: str, *, mode="origin", ip="127.0.0.1"):
    return services.enter(
        mode=mode, runtime_id=runtime_id, ticket=ticket, client_ip=ip, user_agent="pytest-agent/1"
    )


def mint(api, runtime) -> str:
    response = ask_app_ticket(api, runtime.runtime_id)
    assert response.status_code == 200, response.content
    return ticket_in(response.json()["appUrl"])


def test_an_app_ticket_opens_the_apps_own_origin_and_is_audited_without_itself(
    api, user, app_runtime
):
    response = ask_app_ticket(api, app_runtime.runtime_id)

    assert response.status_code == 200, response.content
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    ticket = ticket_in(body["appUrl"])
    assert body["appUrl"] == (
        f"https://{app_runtime.runtime_id}.apps.example.test/.workgate/enter?ticket={ticket}"
    )
    assert body["success"] is True and body["mode"] == "origin"
    assert body["workspaceId"] == app_runtime.runtime_id and body["expiresInSec"] == 60
    claims = jwt.decode(ticket, options={"verify_signature": False})
    assert claims["token_type"] == "app_ticket" and claims["aud"] == "workgate:app-proxy"
    row = AppTicket.objects.get()
    assert (row.session, row.user, row.used_at) == (app_runtime, user, None)
    assert timedelta(seconds=59) < row.expires_at - row.issued_at <= timedelta(seconds=60)
    entry = AuditEntry.objects.get(action="app_ticket_issued")
    assert (entry.actor, entry.resource, entry.success) == (user, f"session:{app_runtime.id}", True)
    assert entry.details["jti"] == row.jti and entry.details["mode"] == "origin"
    assert ticket not in str(entry.details)


def test_an_app_ticket_is_not_a_desktop_ticket_nor_the_other_way_round(
    api, app_runtime, desktop_runtime
):
    desktop = api.post(
        "/api/agents/workspace/ticket", {"workspaceId": app_runtime.runtime_id}, format="json"
    )
    app = ask_app_ticket(api, desktop_runtime.runtime_id)

    assert desktop.status_code == 409 and desktop.json()["code"] == "not_a_desktop"
    assert "app-ticket" in desktop.json()["detail"]
    assert app.status_code == 409 and app.json()["code"] == "not_an_app"
    assert not AppTicket.objects.exists()
    refused = AuditEntry.objects.filter(success=False).values_list("action", "details__refused")
    assert sorted(refused) == [
        ("app_ticket_issued", "not_an_app"),
        ("ticket_issued", "not_a_desktop"),
    ]


def test_another_users_runtime_is_not_found_whether_or_not_it_exists(
    client_for, other_user, app_runtime
):
    theirs = ask_app_ticket(client_for(other_user), app_runtime.runtime_id)
    nobody = ask_app_ticket(client_for(other_user), "wg-000000000000")

    assert theirs.status_code == nobody.status_code == 404
    assert theirs.json() == nobody.json()
    assert not AppTicket.objects.exists()


def test_mfa_and_the_tunnel_are_required_as_for_a_desktop(
    api, client_for, user, app_runtime, settings, enable_mfa
):
    settings.WORKGATE_REQUIRE_MFA = True
    assert ask_app_ticket(api, app_runtime.runtime_id).json()["code"] == "mfa_required"
    assert ask_app_ticket(client_for(user, mfa=True), app_runtime.runtime_id).status_code == 200

    settings.WORKGATE_REQUIRE_MFA = False
    Workspace.objects.filter(pk=app_runtime.workspace_id).update(requires_netbird=True)
    outside = ask_app_ticket(api, app_runtime.runtime_id)
    inside = ask_app_ticket(client_for(user, REMOTE_ADDR=OVERLAY_IP), app_runtime.runtime_id)

    assert outside.status_code == 403 and outside.json()["code"] == "tunnel_required"
    assert inside.status_code == 200
    # ... and the ticket asked for through the tunnel opens nothing from outside it.
    with pytest.raises(AppRefused) as refused:
        enter(app_runtime.runtime_id, ticket_in(inside.json()["appUrl"]))
    assert (refused.value.status, refused.value.code) == (403, "tunnel_required")


def test_app_tickets_are_rate_limited_per_user(api, app_runtime, settings):
    settings.WORKGATE_TICKET_RATE = "2/m"

    answers = [ask_app_ticket(api, app_runtime.runtime_id) for _ in range(3)]

    assert [answer.status_code for answer in answers] == [200, 200, 429]
    assert answers[2].json()["code"] == "rate_limited" and answers[2]["Retry-After"]


def test_without_an_apps_domain_only_a_workspace_that_allows_it_opens_under_apps(
    api, app_runtime, settings
):
    settings.WORKGATE_APPS_DOMAIN = ""
    refused = ask_app_ticket(api, app_runtime.runtime_id)
    assert refused.status_code == 503 and refused.json()["code"] == "apps_domain_unset"
    assert "WORKGATE_APPS_DOMAIN" in refused.json()["detail"]

    Workspace.objects.filter(pk=app_runtime.workspace_id).update(app_path_prefix_allowed=True)
    body = ask_app_ticket(api, app_runtime.runtime_id).json()

    assert body["mode"] == "prefix"
    assert body["appUrl"].startswith(
        f"http://testserver/apps/{app_runtime.runtime_id}/.workgate/enter?ticket="
    )
    entry = enter(app_runtime.runtime_id, ticket_in(body["appUrl"]), mode="prefix")
    assert entry.admission.mode == "prefix"


def test_a_ticket_opens_one_grant_and_a_replay_is_refused_and_audited_once(api, user, app_runtime):
    ticket = mint(api, app_runtime)

    entry = enter(app_runtime.runtime_id, ticket)
    with pytest.raises(AppRefused) as again:
        enter(app_runtime.runtime_id, ticket, ip="192.0.2.7")
    with pytest.raises(AppRefused):
        enter(app_runtime.runtime_id, ticket, ip="192.0.2.7")

    assert (again.value.status, again.value.code) == (401, "ticket_used")
    grant = AppGrant.objects.get()
    assert entry.admission.grant_id == grant.id
    assert entry.cookie_value != grant.id  # the id, signed with SECRET_KEY
    assert services.grant_id_of(entry.cookie_value) == grant.id
    assert (grant.session, grant.user, grant.mode) == (app_runtime, user, "origin")
    assert grant.sign_in_epoch == user.sign_in_epoch and grant.ended_at is None
    row = AppTicket.objects.get()
    assert row.used_ip == "127.0.0.1" and row.replayed_at is not None
    opened = AuditEntry.objects.filter(action="app_session_opened").order_by("id")
    assert [(e.success, e.details.get("refused")) for e in opened] == [
        (True, None),
        (False, "ticket_used"),
    ]
    assert opened[1].ip_address == "192.0.2.7"
    assert ticket not in str([e.details for e in opened])
    assert entry.cookie_value not in str([e.details for e in AuditEntry.objects.all()])


def test_an_expired_ticket_is_refused(api, app_runtime, monkeypatch):
    ticket = mint(api, app_runtime)
    real_now = tickets.now
    monkeypatch.setattr(tickets, "now", lambda: real_now() + timedelta(seconds=61))

    with pytest.raises(AppRefused) as refused:
        enter(app_runtime.runtime_id, ticket)

    assert refused.value.status == 401
    assert not AppGrant.objects.exists()


def test_a_ticket_spent_a_moment_before_it_expires_still_opens(api, app_runtime, monkeypatch):
    ticket = mint(api, app_runtime)
    expires_at = AppTicket.objects.get().expires_at
    monkeypatch.setattr(tickets, "now", lambda: expires_at - timedelta(milliseconds=1))

    entry = enter(app_runtime.runtime_id, ticket)

    assert entry.max_age > 0 and AppGrant.objects.count() == 1


def test_a_ticket_shown_at_another_apps_door_is_spent_and_opens_nothing(api, app_runtime, web_app):
    ticket = mint(api, app_runtime)

    with pytest.raises(AppRefused) as refused:
        enter("wg-0123456789ab", ticket)

    assert (refused.value.status, refused.value.code) == (403, "app_wrong_origin")
    assert AppTicket.objects.get().used_at is not None
    with pytest.raises(AppRefused):
        enter(app_runtime.runtime_id, ticket)
    assert not AppGrant.objects.exists()


def test_a_desktop_ticket_is_no_app_ticket(api, desktop_runtime, app_runtime):
    response = api.post(
        "/api/agents/workspace/ticket", {"workspaceId": desktop_runtime.runtime_id}, format="json"
    )
    desktop_ticket = ticket_in(response.json()["vncUrl"])

    with pytest.raises(AppRefused) as refused:
        enter(app_runtime.runtime_id, desktop_ticket)

    assert (refused.value.status, refused.value.code) == (401, "ticket_invalid")


def test_signing_out_everywhere_voids_unspent_app_tickets(api, user, app_runtime):
    ticket = mint(api, app_runtime)

    user_sign_out_everywhere(user=user, actor=user, origin=Origin())

    with pytest.raises(AppRefused) as refused:
        enter(app_runtime.runtime_id, ticket)
    assert (refused.value.status, refused.value.code) == (401, "ticket_expired")
    entry = AuditEntry.objects.get(action="signed_out_everywhere")
    assert entry.details["desktop_passes_voided"] == 1


def test_a_ticket_minted_before_a_sign_out_its_void_missed_is_refused(api, user, app_runtime):
    ticket = mint(api, app_runtime)
    User.objects.filter(pk=user.pk).update(sign_in_epoch=F("sign_in_epoch") + 1)

    with pytest.raises(AppRefused) as refused:
        enter(app_runtime.runtime_id, ticket)

    assert (refused.value.status, refused.value.code) == (403, "signed_out")
    assert not AppGrant.objects.exists()


def test_a_ticket_of_a_session_stopped_since_opens_nothing(api, user, app_runtime):
    ticket = mint(api, app_runtime)
    session_terminate(session=app_runtime, actor=user, reason=EndReason.USER_STOP, origin=Origin())

    with pytest.raises(AppRefused) as refused:
        enter(app_runtime.runtime_id, ticket)

    assert (refused.value.status, refused.value.code) == (404, "app_session_ended")
    assert WorkspaceSession.objects.get().status == "terminated"


def test_a_forged_or_foreign_token_is_no_ticket(api, app_runtime):
    forged = jwt.encode({"jti": "x", "token_type": "app_ticket"}, "k" * 32, algorithm="HS256")
    for raw in ["", "x" * 5000, "not-a-jwt", forged]:
        with pytest.raises(AppRefused) as refused:
            enter(app_runtime.runtime_id, raw)
        assert refused.value.status == 401


def test_a_ticket_opens_its_app_only_in_the_mode_the_workspace_is_reached_in(
    api, app_runtime, settings
):
    """Where an apps domain is set an app is never served under /apps/ (its pages would run on
    the gateway's origin), even for a workspace that allows the prefix; without one, never on
    an app origin."""
    Workspace.objects.filter(pk=app_runtime.workspace_id).update(app_path_prefix_allowed=True)
    with pytest.raises(AppRefused) as under_prefix:
        enter(app_runtime.runtime_id, mint(api, app_runtime), mode="prefix")
    assert (under_prefix.value.status, under_prefix.value.code) == (404, "app_not_found")

    settings.WORKGATE_APPS_DOMAIN = ""
    with pytest.raises(AppRefused) as on_an_origin:
        enter(app_runtime.runtime_id, mint(api, app_runtime), mode="origin")
    assert (on_an_origin.value.status, on_an_origin.value.code) == (404, "app_not_found")
    assert not AppGrant.objects.exists()
