"""GET /api/agents/workspace/me and the super gate in front of the rest of /api/agents/."""

from __future__ import annotations

import pytest

from audit.models import AuditEntry
from sessions_app.models import WorkspaceSession

pytestmark = pytest.mark.django_db

ME = "/api/agents/workspace/me"


def test_me_without_runtimes(api):
    response = api.get(ME)

    assert response.status_code == 200
    assert response.json() == {
        "success": True,
        "agent": {"workspace": {"runtime": None, "runtimes": []}},
    }


def test_me_reports_your_live_desktop_runtimes(api, user, other_user, make_runtime, make_workspace):
    ended = make_runtime(user, status="terminated")
    starting = make_runtime(user, status="starting", upstream_kind="", upstream_target="")
    ready = make_runtime(user)
    make_runtime(other_user)
    web = make_workspace(connection_type="web", provisioner="static")
    make_runtime(user, workspace=web, upstream_kind="", upstream_target="")

    body = api.get(ME).json()

    runtime = body["agent"]["workspace"]["runtime"]
    assert runtime == {
        "workspaceId": ready.runtime_id,
        "status": "ready",
        "sessionId": str(ready.id),
        "workspace": {"id": ready.workspace_id, "name": ready.workspace_name, "type": "linux"},
        "startedAt": runtime["startedAt"],
        "readyAt": runtime["readyAt"],
    }
    assert runtime["readyAt"] is not None
    listed = [(r["workspaceId"], r["status"]) for r in body["agent"]["workspace"]["runtimes"]]
    assert sorted(listed) == sorted(
        [(ready.runtime_id, "ready"), (starting.runtime_id, "provisioning")]
    )
    assert ended.runtime_id not in str(body)


def test_me_shows_the_last_runtime_once_none_is_live(api, user, make_runtime):
    ended = make_runtime(user, status="error")

    body = api.get(ME).json()

    assert body["agent"]["workspace"]["runtime"]["workspaceId"] == ended.runtime_id
    assert body["agent"]["workspace"]["runtime"]["status"] == "error"
    assert body["agent"]["workspace"]["runtimes"] == []


def test_me_needs_a_signed_in_user(anon):
    assert anon.get(ME).status_code == 401


# --- The super gate ------------------------------------------------------------------------------

GATED = [
    ("get", "/api/agents/workspaces"),
    ("post", "/api/agents/workspaces/wg-000000000000/terminate"),
    ("get", "/api/agents"),
    ("get", "/api/agents/"),
    ("get", "/api/agents/anything"),
    ("post", "/api/agents/workspace/other"),
    ("delete", "/api/agents/workspaces"),
    ("put", "/api/agents/workspace/vnc/wg-000000000000"),
]


@pytest.mark.parametrize(("method", "path"), GATED)
def test_everything_else_under_agents_is_for_superusers_only(method, path, api, admin_api, anon):
    for client, status in ((api, 403), (admin_api, 403), (anon, 401)):
        response = getattr(client, method)(path)
        assert response.status_code == status, (client, response.content)
    assert api.get("/api/agents/workspaces").json() == {
        "success": False,
        "detail": "Superuser access required",
        "code": "superuser_required",
    }


def test_the_callers_own_routes_are_open_to_every_user(api, user, make_runtime):
    runtime = make_runtime(user)

    assert api.get(ME).status_code == 200
    ticket = api.post(
        "/api/agents/workspace/ticket", {"workspaceId": runtime.runtime_id}, format="json"
    )
    assert ticket.status_code == 200


def test_a_superuser_sees_every_live_runtime(client_for, superuser, user, other_user, make_runtime):
    mine, theirs = make_runtime(user), make_runtime(other_user, status="starting")
    make_runtime(user, status="terminated")

    body = client_for(superuser).get("/api/agents/workspaces").json()

    assert body["success"] is True
    by_id = {runtime["workspaceId"]: runtime for runtime in body["runtimes"]}
    assert set(by_id) == {mine.runtime_id, theirs.runtime_id}
    assert by_id[theirs.runtime_id]["user"] == {"id": other_user.id, "email": other_user.email}
    assert by_id[theirs.runtime_id]["status"] == "provisioning"
    assert "rfb_password" not in str(body) and "pw123456" not in str(body)


def test_a_superuser_terminates_anyones_runtime(client_for, superuser, user, make_runtime):
    runtime = make_runtime(user)
    client = client_for(superuser)

    response = client.post(f"/api/agents/workspaces/{runtime.runtime_id}/terminate")
    again = client.post(f"/api/agents/workspaces/{runtime.runtime_id}/terminate")
    unknown = client.post("/api/agents/workspaces/wg-000000000000/terminate")

    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    assert body["runtime"]["workspaceId"] == runtime.runtime_id
    assert body["runtime"]["status"] == "stopped"
    runtime.refresh_from_db()
    assert runtime.status == WorkspaceSession.Status.TERMINATED
    assert runtime.end_reason == "admin_terminate"
    entry = AuditEntry.objects.get(action="terminate_session")
    assert (entry.actor, entry.resource) == (superuser, f"session:{runtime.id}")
    assert (again.status_code, again.json()["code"]) == (409, "not_live")
    assert unknown.status_code == 404


def test_an_unknown_route_is_404_for_a_superuser(client_for, superuser):
    assert client_for(superuser).get("/api/agents/nothing-here").status_code == 404
