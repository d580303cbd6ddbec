from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import AuditEntry
from sessions_app.models import WorkspaceSession
from tests.support.workspaces import make_web_workspace

pytestmark = pytest.mark.django_db


def make_session(user, workspace, *, status="ready", minutes_ago=0, **fields):
    started = timezone.now() - timedelta(minutes=minutes_ago)
    return WorkspaceSession.objects.create(
        user=user,
        workspace=workspace,
        workspace_name=workspace.name,
        workspace_type=workspace.type,
        status=status,
        started_at=started,
        last_seen_at=started,
        ended_at=None if status in WorkspaceSession.LIVE else started,
        **fields,
    )


def row_order(html: str, sessions) -> list[int]:
    return sorted(range(len(sessions)), key=lambda i: html.index(str(sessions[i].id)))


def test_a_person_sees_only_their_own_sessions_live_first(browser_for, user, other_user):
    wiki, mail = make_web_workspace(), make_web_workspace(name="Mail")
    old_live = make_session(user, wiki, minutes_ago=30)
    recent_ended = make_session(user, mail, status="terminated", minutes_ago=1)
    theirs = make_session(other_user, wiki)

    html = browser_for(user).get("/sessions").content.decode()

    assert row_order(html, [old_live, recent_ended]) == [0, 1]
    assert str(theirs.id) not in html
    assert f'href="/viewer/{old_live.id}"' in html
    assert f'href="/viewer/{recent_ended.id}"' not in html  # ended: nothing to open


def test_an_admin_sees_everyones_sessions_and_filters_them(
    browser_for, admin_user, user, other_user
):
    wiki = make_web_workspace()
    mine = make_session(user, wiki)
    theirs = make_session(other_user, wiki, status="terminated")
    client = browser_for(admin_user)

    everyone = client.get("/sessions").content.decode()
    assert str(mine.id) in everyone and str(theirs.id) in everyone
    assert f'href="/viewer/{mine.id}"' not in everyone  # the viewer is for the owner only

    by_user = client.get("/sessions", {"user": "bob@example.com"}).content.decode()
    assert str(theirs.id) in by_user and str(mine.id) not in by_user
    live = client.get("/sessions", {"status": "live"}).content.decode()
    assert str(mine.id) in live and str(theirs.id) not in live


def test_stopping_a_session_from_the_list_terminates_it_and_is_audited(browser_for, user):
    session = make_session(user, make_web_workspace())
    response = browser_for(user).post(f"/sessions/{session.id}/stop", follow=True)
    assert response.redirect_chain == [("/sessions", 302)]
    session.refresh_from_db()
    assert (session.status, session.end_reason) == ("terminated", "user_stop")
    assert AuditEntry.objects.filter(action="terminate_session", actor=user).count() == 1


def test_nobody_can_stop_someone_elses_session(browser_for, user, other_user):
    session = make_session(user, make_web_workspace())
    response = browser_for(other_user).post(f"/sessions/{session.id}/stop", follow=True)
    assert "Session not found" in next(str(m) for m in response.context["messages"])
    session.refresh_from_db()
    assert session.is_live


def test_the_viewer_is_for_the_owner_alone(browser_for, user, other_user, admin_user):
    session = make_session(user, make_web_workspace())
    assert browser_for(user).get(f"/viewer/{session.id}").status_code == 200
    assert browser_for(other_user).get(f"/viewer/{session.id}").status_code == 404
    assert browser_for(admin_user).get(f"/viewer/{session.id}").status_code == 404


def test_the_viewer_needs_the_code_where_launching_does(browser_for, user, enable_mfa):
    """A browser session from a sign-in without the one-time code (or from before two-step
    sign-in was turned on) opens none of the account's workspaces."""
    enable_mfa(user)
    session = make_session(user, make_web_workspace())

    refused = browser_for(user, mfa=False).get(f"/viewer/{session.id}", follow=True)
    allowed = browser_for(user, mfa=True).get(f"/viewer/{session.id}")

    assert refused.redirect_chain == [("/", 302)]
    page = refused.content.decode()
    assert "requires a sign-in verified with a one-time code" in page
    assert "wiki.example.com" not in page
    assert allowed.status_code == 200 and "wiki.example.com" in allowed.content.decode()


def test_a_web_workspace_opens_in_a_sandboxed_frame_with_a_new_tab_fallback(browser_for, user):
    session = make_session(user, make_web_workspace())
    html = browser_for(user).get(f"/viewer/{session.id}").content.decode()
    assert '<iframe src="https://wiki.example.com/"' in html
    assert 'sandbox="allow-scripts' in html
    assert 'target="_blank" rel="noopener noreferrer"' in html
    assert "novnc" not in html


@pytest.mark.parametrize("url", ["javascript:alert(1)", "http://[::1"])
def test_a_workspace_url_that_is_not_plain_http_is_never_framed(browser_for, user, url):
    session = make_session(user, make_web_workspace(url=url))
    response = browser_for(user).get(f"/viewer/{session.id}")
    assert response.status_code == 200
    html = response.content.decode()
    assert url not in html
    assert "<iframe" not in html


def test_a_desktop_session_loads_novnc_from_the_npm_package(browser_for, user):
    desktop = make_web_workspace(name="Desk", type="linux", connection_type="vnc", url="")
    session = make_session(user, desktop, upstream_kind="tcp", upstream_target="127.0.0.1:5999")
    html = browser_for(user).get(f"/viewer/{session.id}").content.decode()
    assert '"novnc/": "/static/vendor/novnc/"' in html
    assert "workgate/viewer.js" in html
    assert f'data-runtime="{session.runtime_id}"' in html
    assert browser_for(user).get("/static/vendor/novnc/core/rfb.js").status_code == 200


def test_an_ended_session_shows_that_it_ended(browser_for, user):
    session = make_session(user, make_web_workspace(), status="terminated", end_reason="user_stop")
    html = browser_for(user).get(f"/viewer/{session.id}").content.decode()
    assert "Session ended" in html
    assert "<iframe" not in html


@pytest.mark.parametrize("field", ["status", "workspace"])
def test_a_filter_with_a_nul_shows_no_session_rather_than_an_error(browser_for, user, field):
    make_session(user, make_web_workspace())
    client = browser_for(user)
    client.raise_request_exception = False

    page = client.get("/sessions", {field: "a\x00b"})

    assert page.status_code == 200
    assert list(page.context["page"].object_list) == []


def test_an_administrators_user_filter_with_a_nul_shows_no_session(browser_for, admin_user, user):
    make_session(user, make_web_workspace())
    client = browser_for(admin_user)
    client.raise_request_exception = False

    page = client.get("/sessions", {"user": "a\x00b"})

    assert page.status_code == 200
    assert list(page.context["page"].object_list) == []
