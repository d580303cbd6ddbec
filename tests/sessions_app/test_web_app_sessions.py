"""A session of a web app through the gateway (provisioner web, issue 21) as the API and the
viewer page present it: no address of the app is handed to the browser, and the viewer opens the
app's own origin at the top level with a fresh app ticket."""

from __future__ import annotations

import pytest

from sessions_app.models import WorkspaceSession
from tests.app_proxy.conftest import (  # noqa: F401 (fixtures)
    APP_ADDRESS,
    APP_HOST,
    app_networks,
    names,
    signing_key,
    web_app,
)
from tests.support.sessions import launch

pytestmark = pytest.mark.django_db


def test_a_web_app_session_has_no_open_ports_and_names_no_upstream(api, web_app):  # noqa: F811
    response = launch(api, web_app.id)

    body = response.json()
    assert response.status_code == 201, body
    assert body["security"]["no_open_ports"] is True
    assert body["stream_url"] == f"/viewer/{body['session_id']}"
    listed = api.get(f"/api/sessions/{body['session_id']}").content.decode()
    # The workspace's url stays in the catalog (the seed's contract); what the session pinned
    # and carries to the app never leaves the gateway.
    for leak in (APP_ADDRESS, "app-credential-0042"):
        assert leak not in response.content.decode() and leak not in listed
    assert APP_HOST not in listed


def test_a_static_workspace_with_a_url_still_hands_the_browser_its_url(api, make_workspace):
    workspace = make_workspace(url="https://wiki.example.com/")

    body = launch(api, workspace.id).json()

    assert body["security"]["no_open_ports"] is False


def test_the_viewer_of_a_web_app_opens_its_origin_with_a_ticket_and_never_frames_it(
    api,
    browser_for,
    user,
    web_app,  # noqa: F811
):
    session_id = launch(api, web_app.id).json()["session_id"]

    html = browser_for(user).get(f"/viewer/{session_id}").content.decode()

    assert "workgate/app-viewer.js" in html
    assert 'data-action="open-app"' in html
    assert "<iframe" not in html and "viewer.js" not in html.replace("app-viewer.js", "")
    assert APP_HOST not in html and APP_ADDRESS not in html
    runtime_id = WorkspaceSession.objects.get(pk=session_id).runtime_id
    assert f'data-runtime="{runtime_id}"' in html


def test_the_viewer_of_an_ended_web_app_says_so(api, browser_for, user, web_app):  # noqa: F811
    session_id = launch(api, web_app.id).json()["session_id"]
    api.post(f"/api/workspaces/{web_app.id}/stop")

    html = browser_for(user).get(f"/viewer/{session_id}").content.decode()

    assert "Session ended" in html and "app-viewer.js" not in html
