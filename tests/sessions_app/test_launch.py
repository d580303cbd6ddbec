"""POST /api/workspaces/{id}/launch: sessions, the checks in front of them, and their audit."""

from __future__ import annotations

import ipaddress

import pytest

from accounts.models import Profile
from audit.models import AuditEntry
from core.network import Origin
from sessions_app.models import WorkspaceSession
from streaming.tools import ToolContext, tool_call
from tests.support.sessions import OVERLAY_IP, launch
from workspaces.models import Workspace

pytestmark = pytest.mark.django_db


def test_launching_creates_a_ready_session_marks_the_workspace_running_and_is_audited(
    api, user, web_workspace
):
    response = launch(api, web_workspace.id)

    assert response.status_code == 201
    body = response.json()
    session = WorkspaceSession.objects.get()
    assert body["session_id"] == str(session.id)
    assert body["runtime_id"] == session.runtime_id
    assert body["status"] == "ready"
    assert body["created"] is True
    assert body["stream_url"] == f"/viewer/{session.id}"
    assert body["workspace"]["id"] == web_workspace.id
    assert body["workspace"]["status"] == "running"
    assert body["tunnel_status"] == "direct"
    assert set(body["security"]) == {
        "encrypted_tunnel",
        "identity_verified",
        "mfa_enforced",
        "session_recording",
        "no_open_ports",
    }
    assert session.user == user
    assert session.status == "ready"
    assert session.ready_at is not None and session.ended_at is None
    assert session.workspace_name == "Web app" and session.workspace_type == "web"
    assert session.client_ip == "127.0.0.1"
    assert session.user_agent == "pytest-agent/1"
    assert session.provisioner == "static"
    assert Workspace.objects.get(pk=web_workspace.pk).status == "running"
    entry = AuditEntry.objects.get(action="launch_workspace")
    assert entry.actor == user
    assert entry.resource == f"workspace:{web_workspace.id}"
    assert entry.success is True
    assert entry.details["session_id"] == str(session.id)
    assert entry.ip_address == "127.0.0.1"


def test_a_second_launch_returns_the_same_live_session(api, web_workspace):
    first = launch(api, web_workspace.id)
    second = launch(api, web_workspace.id)

    assert first.status_code == 201
    assert second.status_code == 200
    assert second.json()["session_id"] == first.json()["session_id"]
    assert second.json()["created"] is False
    assert WorkspaceSession.objects.count() == 1
    assert AuditEntry.objects.filter(action="launch_workspace").count() == 1


def test_two_users_each_get_their_own_session_of_one_workspace(
    api, client_for, other_user, web_workspace
):
    mine = launch(api, web_workspace.id).json()["session_id"]
    theirs = launch(client_for(other_user), web_workspace.id).json()["session_id"]

    assert mine != theirs
    assert WorkspaceSession.objects.filter(status="ready").count() == 2


def test_an_unknown_workspace_is_404(api):
    response = launch(api, "ws-00000000")

    assert response.status_code == 404
    assert response.json()["detail"] == "Workspace not found"
    assert not WorkspaceSession.objects.exists()


def test_launch_attempts_are_limited_per_user_whoever_asks(
    api, user, browser_for, other_user, client_for, settings
):
    """Every attempt counts, a refused one too, on the API, the catalog page and the assistant's
    tool alike: refusals are audited, and without a limit one account could grow the audit log
    (and hold the chain's lock) as fast as it can ask."""
    settings.WORKGATE_LAUNCH_RATE = "3/m"
    answers = [launch(api, "ws-00000000").status_code for _ in range(2)]
    page = browser_for(user)
    page.post("/workspaces/ws-00000000/launch")
    context = ToolContext(user=user, origin=Origin(ip="127.0.0.1"), mfa_verified=False)

    limited = launch(api, "ws-00000000")
    from_the_page = page.post("/workspaces/ws-00000000/launch", follow=True)
    from_the_tool = tool_call(context, "launch_workspace", {"workspace_id": "ws-00000000"})

    assert answers == [404, 404]
    assert limited.status_code == 429 and int(limited["Retry-After"]) > 0
    assert limited.json()["code"] == "rate_limited"
    assert b"Too many launches; try again in" in from_the_page.content
    assert from_the_tool.success is False
    assert from_the_tool.response["code"] == "rate_limited"
    assert AuditEntry.objects.filter(action="launch_workspace", success=False).count() == 3
    assert launch(client_for(other_user), "ws-00000000").status_code == 404  # their own budget


def test_launching_needs_a_signed_in_user(anon, web_workspace):
    assert launch(anon, web_workspace.id).status_code == 401


@pytest.mark.parametrize("status", ["stopped", "error"])
def test_a_stopped_or_failed_workspace_cannot_be_launched(api, make_workspace, status):
    workspace = make_workspace(status=status)

    response = launch(api, workspace.id)

    assert response.status_code == 409
    assert response.json()["code"] == "workspace_unavailable"
    assert not WorkspaceSession.objects.exists()


class TestTunnel:
    def test_a_netbird_workspace_is_refused_outside_the_trusted_networks(
        self, api, user, make_workspace
    ):
        workspace = make_workspace(requires_netbird=True)

        response = launch(api, workspace.id)

        assert response.status_code == 403
        assert response.json()["code"] == "tunnel_required"
        assert not WorkspaceSession.objects.exists()
        refusal = AuditEntry.objects.get(action="launch_workspace")
        assert refusal.success is False
        assert refusal.actor == user
        assert refusal.details["refused"] == "tunnel_required"

    def test_a_client_in_the_overlay_launches_it_over_an_encrypted_tunnel(
        self, tunnel_client, user, make_workspace
    ):
        workspace = make_workspace(requires_netbird=True)

        response = launch(tunnel_client(user), workspace.id)

        assert response.status_code == 201
        assert response.json()["tunnel_status"] == "encrypted"
        assert response.json()["security"]["encrypted_tunnel"] is True
        session = WorkspaceSession.objects.get()
        assert session.tunnel_status == "encrypted"
        assert session.client_ip == OVERLAY_IP

    def test_a_forwarded_for_header_from_an_untrusted_peer_does_not_count(
        self, client_for, user, make_workspace
    ):
        workspace = make_workspace(requires_netbird=True)
        client = client_for(user, HTTP_X_FORWARDED_FOR=OVERLAY_IP)

        assert launch(client, workspace.id).json()["code"] == "tunnel_required"

    def test_a_trusted_proxy_may_say_the_client_is_in_the_overlay(
        self, client_for, user, make_workspace, settings
    ):
        settings.WORKGATE_TRUSTED_PROXIES = [ipaddress.ip_network("127.0.0.1/32")]
        workspace = make_workspace(requires_netbird=True)
        client = client_for(user, HTTP_X_FORWARDED_FOR=OVERLAY_IP)

        response = launch(client, workspace.id)

        assert response.status_code == 201
        assert WorkspaceSession.objects.get().client_ip == OVERLAY_IP


class TestMfa:
    def test_a_user_with_mfa_needs_a_token_from_a_verified_sign_in(
        self, client_for, user, web_workspace
    ):
        Profile.objects.update_or_create(user=user, defaults={"mfa_enabled": True})

        response = launch(client_for(user, mfa=False), web_workspace.id)

        assert response.status_code == 403
        assert response.json()["code"] == "mfa_required"
        assert not WorkspaceSession.objects.exists()

    def test_a_verified_sign_in_launches_and_mfa_is_reported_as_enforced(
        self, client_for, user, web_workspace
    ):
        Profile.objects.update_or_create(user=user, defaults={"mfa_enabled": True})

        response = launch(client_for(user, mfa=True), web_workspace.id)

        assert response.status_code == 201
        assert response.json()["security"]["mfa_enforced"] is True
        assert WorkspaceSession.objects.get().mfa_verified is True

    def test_requiring_mfa_for_everyone_refuses_users_without_it(
        self, api, web_workspace, settings
    ):
        settings.WORKGATE_REQUIRE_MFA = True

        response = launch(api, web_workspace.id)

        assert response.status_code == 403
        assert response.json()["code"] == "mfa_required"

    def test_without_mfa_nothing_is_claimed_to_be_enforced(self, api, web_workspace):
        assert launch(api, web_workspace.id).json()["security"]["mfa_enforced"] is False


def test_the_per_user_session_limit_is_409(api, make_workspace, settings):
    settings.WORKGATE_MAX_SESSIONS_PER_USER = 2
    first, second, third = (make_workspace() for _ in range(3))
    launch(api, first.id)
    launch(api, second.id)

    response = launch(api, third.id)

    assert response.status_code == 409
    assert response.json()["code"] == "session_limit"
    assert WorkspaceSession.objects.filter(status__in=["starting", "ready"]).count() == 2
    assert Workspace.objects.get(pk=third.pk).status == "available"
    refusal = AuditEntry.objects.get(action="launch_workspace", success=False)
    assert refusal.details["refused"] == "session_limit"


def test_ended_sessions_do_not_count_against_the_limit(api, make_workspace, settings):
    settings.WORKGATE_MAX_SESSIONS_PER_USER = 1
    first, second = make_workspace(), make_workspace()
    launch(api, first.id)
    api.post(f"/api/workspaces/{first.id}/stop")

    assert launch(api, second.id).status_code == 201


def test_a_desktop_without_a_target_is_503_provisioner_unavailable(api, make_workspace):
    workspace = make_workspace(type="linux", connection_type="vnc", provisioner="static")

    response = launch(api, workspace.id)

    assert response.status_code == 503
    body = response.json()
    assert body["code"] == "provisioner_unavailable"
    assert "vnc_target" in body["detail"]
    assert not WorkspaceSession.objects.exists()
    assert Workspace.objects.get(pk=workspace.pk).status == "available"


def test_a_plain_ws_desktop_saved_with_basic_credentials_is_not_launched(api, make_workspace):
    """Saved before such a workspace was refused: the launch says what to fix, and nothing is
    connected to (the relay would refuse it too, rather than send the secret unencrypted)."""
    workspace = make_workspace(
        type="linux",
        connection_type="vnc",
        provisioner="static",
        vnc_target="ws://127.0.0.1:9/websockify",
        vnc_username="kasm_user",
        vnc_secret="basic-auth-Secret-42",
    )

    response = launch(api, workspace.id)

    assert response.status_code == 503
    body = response.json()
    assert body["code"] == "provisioner_unavailable"
    assert "wss://" in body["detail"] and "basic-auth-Secret-42" not in body["detail"]
    assert not WorkspaceSession.objects.exists()
    refusal = AuditEntry.objects.get(action="launch_workspace")
    assert refusal.success is False
    assert refusal.details == {"refused": "provisioner_unavailable", "status_code": 503}


def test_a_local_desktop_is_unavailable_where_local_desktops_are_off(api, make_workspace, settings):
    settings.WORKGATE_LOCAL_DESKTOP = False
    settings.WORKGATE_LOCAL_DESKTOP_HOST_SHELL_FOR_EVERYONE = True  # who may: tested elsewhere
    workspace = make_workspace(type="linux", connection_type="vnc", provisioner="local_desktop")

    response = launch(api, workspace.id)

    assert response.status_code == 503
    assert response.json()["code"] == "provisioner_unavailable"
    assert not WorkspaceSession.objects.exists()


def test_a_desktop_that_does_not_answer_ends_the_session_in_error(
    api, user, make_workspace, monkeypatch
):
    from sessions_app import services
    from tests.support.processes import free_port

    monkeypatch.setattr(services, "READY_TIMEOUT_SECONDS", 0)
    workspace = make_workspace(
        type="linux", connection_type="vnc", vnc_target=f"tcp://127.0.0.1:{free_port()}"
    )

    response = launch(api, workspace.id)

    assert response.status_code == 503
    assert response.json()["code"] == "desktop_unavailable"
    session = WorkspaceSession.objects.get()
    assert session.status == "error"
    assert session.ended_at is not None
    assert session.end_reason == "start_failed"
    assert Workspace.objects.get(pk=workspace.pk).status == "available"
    failure = AuditEntry.objects.get(action="launch_failed")
    assert failure.success is False
    assert failure.actor == user
    assert failure.details["session_id"] == str(session.id)
    # A failed start frees the slot: the next launch tries again with a new session.
    assert launch(api, workspace.id).status_code == 503
    assert WorkspaceSession.objects.filter(status="error").count() == 2


class TestSecurityFlags:
    def test_a_workspace_opened_by_its_own_url_has_open_ports(self, api, web_workspace):
        security = launch(api, web_workspace.id).json()["security"]

        assert security == {
            "encrypted_tunnel": False,
            "identity_verified": True,
            "mfa_enforced": False,
            "session_recording": True,
            "no_open_ports": False,
        }

    def test_a_workspace_without_an_address_exposes_no_ports(self, api, make_workspace):
        workspace = make_workspace(type="browser", connection_type="browser", url="")

        assert launch(api, workspace.id).json()["security"]["no_open_ports"] is True
