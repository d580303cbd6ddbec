"""GET /api/sessions and /api/sessions/{id}: own sessions, admins all, filters and pages."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from sessions_app.models import WorkspaceSession
from tests.support.sessions import launch

pytestmark = pytest.mark.django_db

SESSION_FIELDS = {
    "id",
    "runtime_id",
    "user_id",
    "user_email",
    "workspace_id",
    "workspace_name",
    "workspace_type",
    "status",
    "started_at",
    "ready_at",
    "ended_at",
    "last_seen_at",
    "end_reason",
    "client_ip",
    "user_agent",
    "tunnel_status",
    "mfa_verified",
    "stream_url",
}


@pytest.fixture
def history(api, client_for, other_user, make_workspace):
    """Alice: one live session and one stopped; Bob: one live session."""
    first, second = make_workspace(), make_workspace()
    mine_live = launch(api, first.id).json()["session_id"]
    mine_ended = launch(api, second.id).json()["session_id"]
    api.post(f"/api/workspaces/{second.id}/stop")
    theirs = launch(client_for(other_user), first.id).json()["session_id"]
    return {
        "first": first,
        "second": second,
        "mine_live": mine_live,
        "mine_ended": mine_ended,
        "theirs": theirs,
    }


def ids(response) -> list[str]:
    return [item["id"] for item in response.json()["results"]]


def test_a_user_lists_only_their_own_sessions_newest_first(api, history):
    response = api.get("/api/sessions")

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2
    assert body["next"] is None and body["previous"] is None
    assert ids(response) == [history["mine_ended"], history["mine_live"]]
    assert set(body["results"][0]) == SESSION_FIELDS
    assert body["results"][0]["stream_url"] == f"/viewer/{history['mine_ended']}"
    assert body["results"][0]["user_email"] == "alice@example.com"


def test_an_admin_lists_everyones_sessions(admin_api, history):
    assert set(ids(admin_api.get("/api/sessions"))) == {
        history["mine_live"],
        history["mine_ended"],
        history["theirs"],
    }


def test_filters_by_status_workspace_and_user(admin_api, history, user, other_user):
    assert ids(admin_api.get("/api/sessions?status=terminated")) == [history["mine_ended"]]
    assert set(ids(admin_api.get("/api/sessions?status=live"))) == {
        history["mine_live"],
        history["theirs"],
    }
    assert set(ids(admin_api.get(f"/api/sessions?workspace={history['first'].id}"))) == {
        history["mine_live"],
        history["theirs"],
    }
    assert ids(admin_api.get(f"/api/sessions?user={other_user.pk}")) == [history["theirs"]]
    both = admin_api.get(f"/api/sessions?user={user.pk}&status=ready")
    assert ids(both) == [history["mine_live"]]


def test_a_user_filtering_by_someone_else_sees_nothing(api, history, other_user):
    assert api.get(f"/api/sessions?user={other_user.pk}").json()["count"] == 0


@pytest.mark.parametrize("query", ["status=sleeping", "user=abc", "user=0"])
def test_a_bad_filter_is_400(api, query):
    response = api.get(f"/api/sessions?{query}")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid"


def test_sessions_are_paginated(api, user, make_workspace):
    workspace = make_workspace()
    start = timezone.now() - timedelta(days=1)
    WorkspaceSession.objects.bulk_create(
        WorkspaceSession(
            user=user,
            workspace=workspace,
            workspace_name=workspace.name,
            workspace_type=workspace.type,
            status="terminated",
            started_at=start + timedelta(minutes=index),
            last_seen_at=start + timedelta(minutes=index),
            ended_at=start + timedelta(minutes=index + 1),
        )
        for index in range(55)
    )

    first = api.get("/api/sessions").json()
    second = api.get("/api/sessions?page=2").json()
    small = api.get("/api/sessions?page_size=10&page=3").json()

    assert first["count"] == 55
    assert len(first["results"]) == 50
    assert first["next"].endswith("/api/sessions?page=2")
    assert first["previous"] is None
    assert len(second["results"]) == 5
    assert second["next"] is None
    assert second["previous"] is not None
    assert len(small["results"]) == 10
    assert api.get("/api/sessions?page=9").status_code == 404


class TestDetail:
    def test_the_owner_reads_their_session(self, api, history):
        response = api.get(f"/api/sessions/{history['mine_live']}")

        assert response.status_code == 200
        assert response.json()["status"] == "ready"
        assert set(response.json()) == SESSION_FIELDS

    def test_someone_elses_session_is_404(self, api, history):
        response = api.get(f"/api/sessions/{history['theirs']}")

        assert response.status_code == 404
        assert response.json()["detail"] == "Session not found"

    def test_an_admin_reads_anyones_session(self, admin_api, history):
        assert admin_api.get(f"/api/sessions/{history['theirs']}").status_code == 200

    def test_a_malformed_id_is_404(self, api):
        assert api.get("/api/sessions/12345").status_code == 404

    def test_a_session_outlives_its_workspace(self, api, admin_api, history):
        admin_api.delete(f"/api/workspaces/{history['second'].id}")

        body = api.get(f"/api/sessions/{history['mine_ended']}").json()

        assert body["workspace_id"] is None
        assert body["workspace_name"] == history["second"].name


def test_sessions_need_a_signed_in_user(anon):
    assert anon.get("/api/sessions").status_code == 401
