from __future__ import annotations

import pytest

from audit import services as audit
from tests.support.streams import streamed_body

pytestmark = pytest.mark.django_db


def test_the_audit_page_is_for_admins_only(browser_for, user):
    assert browser_for(user).get("/audit").status_code == 403


def test_admins_see_the_log_newest_first_and_filter_it(browser_for, admin_user, user):
    audit.record(action="login", actor=user, details={"mfa": False})
    audit.record(action="launch_workspace", actor=user, resource="workspace:ws-a", success=False)
    audit.record(action="login", actor=admin_user, details={"mfa": True})
    client = browser_for(admin_user)

    def rows(**filters):
        page = client.get("/audit", filters).context["page"]
        return [(e.action, e.actor_email, e.success) for e in page.object_list]

    assert rows() == [
        ("login", "admin@example.com", True),
        ("launch_workspace", "alice@example.com", False),
        ("login", "alice@example.com", True),
    ]
    assert rows(success="false") == [("launch_workspace", "alice@example.com", False)]
    assert rows(user="alice@example.com", action="login") == [("login", "alice@example.com", True)]
    assert rows(resource="workspace:ws-a") == [("launch_workspace", "alice@example.com", False)]
    # Each resource links to everything about it.
    assert '<a href="?resource=workspace%3Aws-a"' in client.get("/audit").content.decode()
    csv_url = client.get("/audit", {"resource": "workspace:ws-a"}).context["csv_url"]
    assert "resource=workspace%3Aws-a" in csv_url


def test_the_csv_download_carries_the_same_filters(browser_for, admin_user, user):
    audit.record(action="login", actor=user)
    audit.record(action="login_failed", actor=user, success=False)
    client = browser_for(admin_user)

    page = client.get("/audit", {"action": "login", "since": "2020-01-01"})
    csv_url = page.context["csv_url"]
    assert csv_url.startswith("/api/audit-logs?")
    assert "format=csv" in csv_url and "action=login" in csv_url and "since=2020-01-01" in csv_url

    download = client.get(csv_url)
    assert download.status_code == 200
    assert download["Content-Type"].startswith("text/csv")
    body = streamed_body(download).decode()
    assert "login_failed" not in body
    assert "alice@example.com" in body


def test_the_until_day_includes_that_whole_day(browser_for, admin_user, user):
    entry = audit.record(action="login", actor=user)
    day = entry.created_at.date().isoformat()
    page = browser_for(admin_user).get("/audit", {"since": day, "until": day})
    assert [e.pk for e in page.context["page"].object_list] == [entry.pk]


@pytest.mark.parametrize(
    "query",
    [
        {"action": "a\x00b"},
        {"user": "a\x00b"},
        {"resource": "a\x00b"},
        {"until": "9999-12-31"},
        {"since": "0001-01-01"},
    ],
)
def test_a_filter_that_matches_nothing_is_an_empty_page_not_an_error(
    browser_for, admin_user, user, query
):
    """A NUL cannot be asked of PostgreSQL, and the edges of the last day a date can name lie
    beyond what a datetime holds: both were 500s. A NUL matches nothing; such a day is no day."""
    entry = audit.record(action="login", actor=user)
    client = browser_for(admin_user)
    client.raise_request_exception = False

    page = client.get("/audit", query)

    assert page.status_code == 200
    shown = [e.pk for e in page.context["page"].object_list]
    assert shown == ([] if "\x00" in next(iter(query.values())) else [entry.pk])
