"""Stopping a workspace and terminating a session: who may, what changes, what is audited."""

from __future__ import annotations

import logging

import pytest

from audit.models import AuditEntry
from sessions_app.models import WorkspaceSession
from tests.support.sessions import launch
from workspaces.models import Workspace

pytestmark = pytest.mark.django_db


class TestStop:
    def test_stop_ends_the_callers_session_and_frees_the_workspace(self, api, user, web_workspace):
        session_id = launch(api, web_workspace.id).json()["session_id"]

        response = api.post(f"/api/workspaces/{web_workspace.id}/stop")

        assert response.status_code == 200
        assert response.json() == {"message": "Workspace stopped successfully"}
        session = WorkspaceSession.objects.get(pk=session_id)
        assert session.status == "terminated"
        assert session.ended_at is not None
        assert session.end_reason == "user_stop"
        assert Workspace.objects.get(pk=web_workspace.pk).status == "available"
        entry = AuditEntry.objects.get(action="stop_workspace")
        assert entry.actor == user
        assert entry.resource == f"workspace:{web_workspace.id}"
        assert entry.details["session_id"] == session_id
        assert entry.details["reason"] == "user_stop"

    def test_stop_without_a_live_session_is_404_no_active_session(self, api, web_workspace):
        response = api.post(f"/api/workspaces/{web_workspace.id}/stop")

        assert response.status_code == 404
        assert response.json()["code"] == "no_active_session"

    def test_a_second_stop_is_404(self, api, web_workspace):
        launch(api, web_workspace.id)
        api.post(f"/api/workspaces/{web_workspace.id}/stop")

        assert api.post(f"/api/workspaces/{web_workspace.id}/stop").status_code == 404

    def test_stop_of_an_unknown_workspace_is_404_workspace_not_found(self, api):
        response = api.post("/api/workspaces/ws-deadbeef/stop")

        assert response.status_code == 404
        assert response.json()["detail"] == "Workspace not found"

    def test_stopping_leaves_other_users_sessions_and_the_workspace_running(
        self, api, client_for, other_user, web_workspace
    ):
        launch(api, web_workspace.id)
        theirs = launch(client_for(other_user), web_workspace.id).json()["session_id"]

        api.post(f"/api/workspaces/{web_workspace.id}/stop")

        assert WorkspaceSession.objects.get(pk=theirs).status == "ready"
        assert Workspace.objects.get(pk=web_workspace.pk).status == "running"

    def test_another_user_cannot_stop_my_session(self, api, client_for, other_user, web_workspace):
        session_id = launch(api, web_workspace.id).json()["session_id"]

        response = client_for(other_user).post(f"/api/workspaces/{web_workspace.id}/stop")

        assert response.status_code == 404
        assert WorkspaceSession.objects.get(pk=session_id).status == "ready"


class TestTerminate:
    def test_ending_a_session_on_the_workspaces_own_host_logs_no_error(
        self, api, web_workspace, caplog, django_capture_on_commit_callbacks
    ):
        session_id = launch(api, web_workspace.id).json()["session_id"]

        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            response = api.post(f"/api/sessions/{session_id}/terminate")

        assert response.status_code == 200
        assert WorkspaceSession.objects.get(pk=session_id).provisioner == "static"
        assert callbacks  # the desktop's stop ran
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []

    def test_the_owner_terminates_their_session(self, api, user, web_workspace):
        session_id = launch(api, web_workspace.id).json()["session_id"]

        response = api.post(f"/api/sessions/{session_id}/terminate")

        assert response.status_code == 200
        body = response.json()
        assert body["message"] == "Session terminated"
        assert body["session"]["status"] == "terminated"
        assert body["session"]["end_reason"] == "terminated"
        assert Workspace.objects.get(pk=web_workspace.pk).status == "available"
        entry = AuditEntry.objects.get(action="terminate_session")
        assert entry.actor == user
        assert entry.resource == f"session:{session_id}"

    def test_an_admin_terminates_anyones_session(self, api, admin_api, admin_user, web_workspace):
        session_id = launch(api, web_workspace.id).json()["session_id"]

        response = admin_api.post(f"/api/sessions/{session_id}/terminate")

        assert response.status_code == 200
        assert WorkspaceSession.objects.get(pk=session_id).end_reason == "admin_terminate"
        assert AuditEntry.objects.get(action="terminate_session").actor == admin_user

    def test_another_user_gets_404_and_the_session_lives_on(
        self, api, client_for, other_user, web_workspace
    ):
        session_id = launch(api, web_workspace.id).json()["session_id"]

        response = client_for(other_user).post(f"/api/sessions/{session_id}/terminate")

        assert response.status_code == 404
        assert WorkspaceSession.objects.get(pk=session_id).status == "ready"
        assert not AuditEntry.objects.filter(action="terminate_session").exists()

    def test_terminating_an_ended_session_changes_nothing(self, api, web_workspace):
        session_id = launch(api, web_workspace.id).json()["session_id"]
        api.post(f"/api/sessions/{session_id}/terminate")
        ended_at = WorkspaceSession.objects.get(pk=session_id).ended_at

        response = api.post(f"/api/sessions/{session_id}/terminate")

        assert response.status_code == 200
        assert response.json()["session"]["status"] == "terminated"
        assert WorkspaceSession.objects.get(pk=session_id).ended_at == ended_at
        assert AuditEntry.objects.filter(action="terminate_session").count() == 1

    @pytest.mark.parametrize("session_id", ["not-a-uuid", "00000000-0000-0000-0000-000000000000"])
    def test_a_malformed_or_unknown_id_is_404(self, api, session_id):
        response = api.post(f"/api/sessions/{session_id}/terminate")

        assert response.status_code == 404
        assert response.json()["detail"] == "Session not found"
