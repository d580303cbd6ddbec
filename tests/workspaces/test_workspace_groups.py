"""Who may use a workspace: shared with groups, only their members see and launch it (a workspace
with no groups is everyone's). Every way in asks the same question: the catalog API, the pages,
the assistant's tools, a launch and a desktop ticket (tests/vnc_proxy/test_tickets.py)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.db.models import ProtectedError

from audit.models import AuditEntry
from core.network import Origin
from sessions_app.models import WorkspaceSession
from streaming.tools import ToolContext, tool_call
from tests.support.workspaces import make_web_workspace

pytestmark = pytest.mark.django_db


@pytest.fixture
def finance(user):
    """A group holding `user` (not other_user), and a workspace shared with it alone."""
    group = Group.objects.create(name="Finance")
    user.groups.add(group)
    workspace = make_web_workspace(id="ws-ledger", name="Ledger", description="The books")
    workspace.groups.set([group])
    return workspace


def listed(client) -> list[str]:
    response = client.get("/api/workspaces")
    assert response.status_code == 200
    return [item["id"] for item in response.json()]


def test_only_members_of_its_groups_see_a_shared_workspace(client_for, user, other_user, finance):
    open_to_all = make_web_workspace(id="ws-wiki")
    member, outsider = client_for(user), client_for(other_user)

    assert listed(member) == ["ws-ledger", "ws-wiki"]
    assert listed(outsider) == ["ws-wiki"]
    assert member.get("/api/workspaces/ws-ledger").status_code == 200
    hidden = outsider.get("/api/workspaces/ws-ledger")
    unknown = outsider.get("/api/workspaces/ws-nothing")
    assert (hidden.status_code, hidden.json()) == (unknown.status_code, unknown.json())
    assert hidden.status_code == 404
    assert "groups" not in member.get(f"/api/workspaces/{open_to_all.id}").json()


def test_an_outsider_cannot_tell_a_workspace_kept_from_them_from_one_that_does_not_exist(
    client_for, other_user, finance
):
    """Launching or stopping it answers what an unknown id answers, and leaves the same trace
    in the outsider's own view of the audit log."""
    outsider = client_for(other_user)

    def attempt(workspace_id: str) -> tuple:
        launched = outsider.post(f"/api/workspaces/{workspace_id}/launch")
        stopped = outsider.post(f"/api/workspaces/{workspace_id}/stop")
        log = outsider.get("/api/audit-logs", {"resource": f"workspace:{workspace_id}"}).json()
        trace = [(e["action"], e["details"], e["success"]) for e in log["results"]]
        return launched.status_code, launched.json(), stopped.status_code, stopped.json(), trace

    assert attempt("ws-ledger") == attempt("ws-nothing")
    status, body, stop_status, _, trace = attempt("ws-ledger")
    assert (status, body["code"], stop_status) == (404, "not_found", 404)
    assert trace[0] == ("launch_workspace", {"refused": "not_found", "status_code": 404}, False)
    assert not WorkspaceSession.objects.exists()


def test_a_member_of_any_of_its_groups_launches_it(client_for, user, other_user, finance):
    auditors = Group.objects.create(name="Auditors")
    finance.groups.add(auditors)
    other_user.groups.add(auditors, Group.objects.create(name="Sales"))

    assert client_for(user).post("/api/workspaces/ws-ledger/launch").status_code == 201
    assert client_for(other_user).post("/api/workspaces/ws-ledger/launch").status_code == 201
    assert listed(client_for(other_user)) == ["ws-ledger"]  # once, in two of its groups


def test_withdrawn_after_the_launch_the_session_can_still_be_stopped(
    client_for, browser_for, user, finance
):
    member = client_for(user)
    session_id = member.post("/api/workspaces/ws-ledger/launch").json()["session_id"]
    user.groups.clear()

    assert browser_for(user).get(f"/viewer/{session_id}").status_code == 404
    stopped = member.post("/api/workspaces/ws-ledger/stop")
    assert stopped.status_code == 200
    assert WorkspaceSession.objects.get().status == WorkspaceSession.Status.TERMINATED


def test_a_group_that_shares_a_workspace_cannot_be_deleted(site, finance):
    """Its links would go with it, and a workspace left with no groups is everyone's."""
    group = Group.objects.get(name="Finance")
    with pytest.raises(ProtectedError):
        group.delete()

    page = site.post(f"/admin/auth/group/{group.pk}/delete/", {"post": "yes"})
    assert "Cannot delete group" in page.content.decode()
    assert Group.objects.filter(pk=group.pk).exists()
    assert [g.name for g in finance.groups.all()] == ["Finance"]


def test_administrators_see_every_workspace_with_its_groups_but_launch_by_the_same_rule(
    admin_api, admin_user, finance
):
    assert listed(admin_api) == ["ws-ledger"]
    assert admin_api.get("/api/workspaces/ws-ledger").json()["groups"] == ["Finance"]
    # Managing the catalog is not using it.
    assert admin_api.post("/api/workspaces/ws-ledger/launch").status_code == 404
    admin_user.groups.add(Group.objects.get(name="Finance"))
    assert admin_api.post("/api/workspaces/ws-ledger/launch").status_code == 201


def test_the_catalog_page_shows_only_what_the_person_may_use(
    browser_for, user, other_user, finance
):
    def cards(person) -> list[str]:
        page = browser_for(person).get("/")
        return [card["workspace"].id for card in page.context["cards"]]

    assert "ws-ledger" in cards(user)
    assert "ws-ledger" not in cards(other_user)
    refused = browser_for(other_user).post("/workspaces/ws-ledger/launch", follow=True)
    assert not WorkspaceSession.objects.exists()
    assert refused.redirect_chain[-1][0] == "/"
    assert "Workspace not found" in refused.content.decode()


def test_the_assistants_tools_list_search_and_launch_by_the_same_rule(user, other_user, finance):
    def run(person, name, arguments):
        context = ToolContext(user=person, origin=Origin(ip="127.0.0.1"), mfa_verified=False)
        return tool_call(context, name, arguments)

    def names(outcome) -> list[str]:
        return [w["id"] for w in outcome.response["workspaces"]]

    assert "ws-ledger" in names(run(user, "list_workspaces", {}))
    assert "ws-ledger" not in names(run(other_user, "list_workspaces", {}))
    assert names(run(user, "search_workspaces", {"query": "ledger"})) == ["ws-ledger"]
    assert names(run(other_user, "search_workspaces", {"query": "ledger"})) == []
    launch = run(other_user, "launch_workspace", {"workspace_id": "ws-ledger"})
    assert (launch.success, launch.response["code"]) == (False, "not_found")
    assert not WorkspaceSession.objects.exists()


class TestAdministration:
    def test_the_admin_api_shares_a_workspace_by_group_names_and_audits_who_may_use_it(
        self, admin_api, user, other_user
    ):
        Group.objects.create(name="Finance").user_set.add(user)
        Group.objects.create(name="Auditors")
        created = admin_api.post(
            "/api/workspaces",
            {
                "name": "Ledger",
                "type": "web",
                "description": "The books",
                "url": "https://ledger.example.com/",
                "connection_type": "web",
                "groups": ["Finance"],
            },
            format="json",
        )
        assert created.status_code == 201
        workspace_id = created.json()["workspace"]["id"]
        assert created.json()["workspace"]["groups"] == ["Finance"]

        updated = admin_api.patch(
            f"/api/workspaces/{workspace_id}", {"groups": ["Auditors", "Finance"]}, format="json"
        )

        assert updated.status_code == 200
        assert updated.json()["workspace"]["groups"] == ["Auditors", "Finance"]
        entries = AuditEntry.objects.filter(resource=f"workspace:{workspace_id}").order_by("id")
        assert [e.action for e in entries] == ["create_workspace", "update_workspace"]
        assert entries[0].details["groups"] == ["Finance"]
        assert entries[1].details == {
            "changed": ["groups"],
            "groups": {"before": ["Finance"], "after": ["Auditors", "Finance"]},
        }
        cleared = admin_api.patch(f"/api/workspaces/{workspace_id}", {"groups": []}, format="json")
        assert cleared.json()["workspace"]["groups"] == []

    def test_an_unknown_group_is_a_400_and_changes_nothing(self, admin_api, finance):
        response = admin_api.patch(
            "/api/workspaces/ws-ledger", {"groups": ["Finance", "Nobody"]}, format="json"
        )

        assert response.status_code == 400
        assert "groups" in response.json()["errors"]
        assert [g.name for g in finance.groups.all()] == ["Finance"]
        assert not AuditEntry.objects.filter(action="update_workspace").exists()

    def test_the_django_admin_shares_a_workspace_through_the_audited_service(
        self, site, superuser, finance
    ):
        auditors = Group.objects.create(name="Auditors")
        page = site.get("/admin/workspaces/workspace/ws-ledger/change/")
        admin_form = page.context["adminform"].form
        form = {key: value for key, value in admin_form.initial.items() if value is not None}
        assert [g.name for g in admin_form.fields["shared_with"].initial] == ["Finance"]
        form["shared_with"] = [str(auditors.pk)]

        response = site.post("/admin/workspaces/workspace/ws-ledger/change/", form)

        assert response.status_code == 302, response.context["adminform"].form.errors
        assert [g.name for g in finance.groups.all()] == ["Auditors"]
        entry = AuditEntry.objects.get(action="update_workspace")
        assert entry.details["groups"] == {"before": ["Finance"], "after": ["Auditors"]}
        assert entry.actor == superuser
