from __future__ import annotations

from ipaddress import ip_network

import pytest
from django.test import override_settings

from audit.models import AuditEntry
from sessions_app.models import WorkspaceSession
from tests.support.workspaces import make_web_workspace
from workspaces.selectors import workspace_list

pytestmark = pytest.mark.django_db

LOOPBACK = [ip_network("127.0.0.0/8")]


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def test_the_catalog_shows_a_card_per_workspace_with_its_details(browser_for, user):
    page = browser_for(user).get("/")
    assert page.status_code == 200
    html = page.content.decode()
    assert html.count('class="card"') == 5  # the defaults, seeded on first look
    for text in ("Linux Desktop", "VNC", "2 vCPU", "4 GB", "50 GB", "Requires the NetBird tunnel"):
        assert text in html
    assert html.count(">Launch</button>") == 5


@override_settings(WORKGATE_TRUSTED_NETWORKS=LOOPBACK)
def test_launching_from_the_catalog_opens_the_viewer_of_the_new_session(browser_for, user):
    workspace = make_web_workspace()
    client = browser_for(user)

    response = client.post(f"/workspaces/{workspace.id}/launch")

    session = WorkspaceSession.objects.get(user=user, workspace=workspace)
    assert response.status_code == 302
    assert response["Location"] == f"/viewer/{session.id}"
    assert session.is_live
    assert AuditEntry.objects.filter(action="launch_workspace", success=True).count() == 1
    card = client.get("/").content.decode()
    assert f'href="/viewer/{session.id}"' in card  # the card now offers Open and Stop


def test_launch_is_a_csrf_protected_post(browser_for, user):
    workspace = make_web_workspace()
    client = browser_for(user)
    client.handler.enforce_csrf_checks = True
    assert client.get(f"/workspaces/{workspace.id}/launch").status_code == 405
    assert client.post(f"/workspaces/{workspace.id}/launch").status_code == 403
    assert not WorkspaceSession.objects.exists()


def test_a_workspace_behind_the_tunnel_is_refused_with_a_clear_message(browser_for, user):
    workspace = make_web_workspace(requires_netbird=True)
    response = browser_for(user).post(f"/workspaces/{workspace.id}/launch", follow=True)
    assert response.redirect_chain == [("/", 302)]
    (message,) = messages_of(response)
    assert "requires an encrypted tunnel" in message
    assert "Connect to the NetBird tunnel" in message
    assert not WorkspaceSession.objects.exists()


def test_an_mfa_account_signed_in_without_a_code_is_told_to_use_one(browser_for, user, enable_mfa):
    enable_mfa(user)
    workspace = make_web_workspace()
    refused = browser_for(user, mfa=False).post(f"/workspaces/{workspace.id}/launch", follow=True)
    assert "one-time code" in messages_of(refused)[0]
    assert not WorkspaceSession.objects.exists()

    allowed = browser_for(user, mfa=True).post(f"/workspaces/{workspace.id}/launch")
    assert allowed.status_code == 302
    assert WorkspaceSession.objects.get().mfa_verified is True


@override_settings(WORKGATE_MAX_SESSIONS_PER_USER=1)
def test_the_session_limit_is_explained(browser_for, user):
    first, second = make_web_workspace(), make_web_workspace(name="Mail")
    client = browser_for(user)
    client.post(f"/workspaces/{first.id}/launch")
    response = client.post(f"/workspaces/{second.id}/launch", follow=True)
    assert "Stop a session you no longer need" in messages_of(response)[0]
    assert WorkspaceSession.objects.count() == 1


@override_settings(
    WORKGATE_LOCAL_DESKTOP=False, WORKGATE_LOCAL_DESKTOP_HOST_SHELL_FOR_EVERYONE=True
)
def test_a_desktop_this_server_cannot_start_is_explained(browser_for, user):
    workspace_list()  # the defaults, with the Linux desktop
    response = browser_for(user).post("/workspaces/ws-linux-desktop/launch", follow=True)
    (message,) = messages_of(response)
    assert "An administrator has to set this desktop up" in message


def test_stopping_from_the_catalog_ends_the_session(browser_for, user):
    workspace = make_web_workspace()
    client = browser_for(user)
    client.post(f"/workspaces/{workspace.id}/launch")

    response = client.post(f"/workspaces/{workspace.id}/stop", follow=True)

    assert messages_of(response) == ["The workspace was stopped."]
    session = WorkspaceSession.objects.get()
    assert (session.status, session.end_reason) == ("terminated", "user_stop")
    assert AuditEntry.objects.filter(action="stop_workspace").count() == 1


def test_the_api_called_from_a_page_knows_its_sign_in_verified_a_code(
    browser_for, user, enable_mfa
):
    enable_mfa(user)
    workspace = make_web_workspace()
    # The page's scripts call the JSON API with the session cookie (and the CSRF header).
    refused = browser_for(user, mfa=False).post(f"/api/workspaces/{workspace.id}/launch")
    assert (refused.status_code, refused.json()["code"]) == (403, "mfa_required")

    allowed = browser_for(user, mfa=True).post(f"/api/workspaces/{workspace.id}/launch")

    assert allowed.status_code == 201
    assert WorkspaceSession.objects.get().mfa_verified is True
