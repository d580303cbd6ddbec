"""Sessions in the Django admin: filters, no editing, and a Terminate action that is audited."""

from __future__ import annotations

import pytest

from audit.models import AuditEntry
from sessions_app.models import WorkspaceSession
from tests.support.sessions import launch

pytestmark = pytest.mark.django_db


def test_the_session_list_filters_and_searches(site, api, web_workspace):
    launch(api, web_workspace.id)

    for query in ("", "?status__exact=ready", "?q=alice", "?mfa_verified__exact=0"):
        response = site.get(f"/admin/sessions_app/workspacesession/{query}")
        assert response.status_code == 200
        assert b"Web app" in response.content


def test_a_session_page_shows_no_secret_and_cannot_be_edited(site, api, make_workspace):
    workspace = make_workspace(rfb_password="secret-rfb-9")
    session_id = launch(api, workspace.id).json()["session_id"]
    WorkspaceSession.objects.filter(pk=session_id).update(rfb_password="secret-rfb-9")

    page = site.get(f"/admin/sessions_app/workspacesession/{session_id}/change/")

    assert page.status_code == 200
    assert b"secret-rfb-9" not in page.content
    assert b'name="_save"' not in page.content
    assert site.get("/admin/sessions_app/workspacesession/add/").status_code == 403


def test_the_terminate_action_ends_sessions_through_the_audited_service(
    site, superuser, api, web_workspace
):
    session_id = launch(api, web_workspace.id).json()["session_id"]

    response = site.post(
        "/admin/sessions_app/workspacesession/",
        {"action": "terminate", "_selected_action": [session_id]},
        follow=True,
    )

    assert response.status_code == 200
    assert b"Terminated 1 session(s)." in response.content
    session = WorkspaceSession.objects.get(pk=session_id)
    assert session.status == "terminated"
    assert session.end_reason == "admin_terminate"
    entry = AuditEntry.objects.get(action="terminate_session")
    assert entry.actor == superuser
    assert entry.resource == f"session:{session_id}"


def test_a_user_who_is_not_staff_is_sent_to_the_login_page(client, user):
    client.force_login(user)

    response = client.get("/admin/sessions_app/workspacesession/")

    assert response.status_code == 302
    assert "/login" in response["Location"]
