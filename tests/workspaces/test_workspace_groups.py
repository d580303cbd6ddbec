"""Who may use a workspace: shared with groups, only their members see and launch it (a workspace
with no groups is everyone's). Every way in asks the same question: the catalog API, the pages,
the assistant's tools, a launch and a desktop ticket (tests/vnc_proxy/test_tickets.py)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from audit.models import AuditEntry
from audit.services import Origin
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


def test_an_outsiders_launch_is_the_404_of_an_unknown_id_and_is_audited(
    client_for, other_user, finance
):
    response = client_for(other_user).post("/api/workspaces/ws-ledger/launch")

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert not WorkspaceSession.objects.exists()
    entry = AuditEntry.objects.get(action="launch_workspace")
    assert (entry.actor, entry.resource, entry.success) == (
        other_user,
        "workspace:ws-ledger",
        False,
    )
    assert entry.details["refused"] == "not_shared"


def test_a_member_launches_it(client_for, user, finance):
    response = client_for(user).post("/api/workspaces/ws-ledger/launch")

    assert response.status_code == 201
    assert WorkspaceSession.objects.get().user == user


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


def test_the_assistants_tools_list_search_and_launch_by_the_same_rule(user, other_user, finance):
    def run(person, name, arguments):
        context = ToolContext(user=person, origin=Origin(ip="127.0.0.1"), mfa_verified=False)
        return tool_call(context, name, arguments)

    def names(outcome) -> list[str]:
        return [w["id"] for w in outcome.response["workspaces"]]

    assert "ws-ledger" in names(run(user, "list_workspaces", {}))
    assert "ws-ledger" not in names(run(other_user, "list_workspaces", {}))
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
        self, client, superuser, finance
    ):
        auditors = Group.objects.create(name="Auditors")
        client.force_login(superuser)
        page = client.get("/admin/workspaces/workspace/ws-ledger/change/")
        form = {
            key: value
            for key, value in page.context["adminform"].form.initial.items()
            if value is not None and key != "groups"
        }
        form["groups"] = [str(auditors.pk)]

        response = client.post("/admin/workspaces/workspace/ws-ledger/change/", form)

        assert response.status_code == 302, response.context["adminform"].form.errors
        assert [g.name for g in finance.groups.all()] == ["Auditors"]
        entry = AuditEntry.objects.get(action="update_workspace")
        assert entry.details["groups"] == {"before": ["Finance"], "after": ["Auditors"]}
        assert entry.actor == superuser
