"""GET /api/audit-logs: everything for administrators, their own for users; filters, pages, CSV."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
from asgiref.sync import async_to_sync
from django.core.handlers.asgi import ASGIHandler
from django.db import transaction

from accounts.tokens import issue_tokens
from audit import services as audit
from audit.models import AuditEntry
from core.network import Origin
from tests.support.signin import PASSWORD
from tests.support.streams import streamed_body

pytestmark = pytest.mark.django_db

ENTRY_FIELDS = {
    "id",
    "created_at",
    "actor_id",
    "actor_email",
    "action",
    "resource",
    "details",
    "ip_address",
    "user_agent",
    "success",
    "prev_hash",
    "hash",
}


@pytest.fixture
def log(user, other_user):
    with transaction.atomic():
        audit.record(action="login", actor=user, origin=Origin(ip="10.0.0.1"))
        audit.record(action="login_failed", actor=other_user, success=False)
        audit.record(action="launch_workspace", actor=user, resource="workspace:ws-1")
        audit.record(action="login", actor=other_user)


def actions(response) -> list[str]:
    return [item["action"] for item in response.json()["results"]]


def test_an_admin_sees_every_entry_newest_first(admin_api, log):
    response = admin_api.get("/api/audit-logs")

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 4
    assert actions(response) == ["login", "launch_workspace", "login_failed", "login"]
    assert set(body["results"][0]) == ENTRY_FIELDS
    assert body["results"][-1]["ip_address"] == "10.0.0.1"


def test_a_user_sees_only_their_own_entries(api, log, user):
    body = api.get("/api/audit-logs").json()

    assert body["count"] == 2
    assert {item["actor_id"] for item in body["results"]} == {user.pk}


def test_a_user_cannot_widen_their_view_with_the_user_filter(api, log, other_user):
    assert api.get(f"/api/audit-logs?user={other_user.pk}").json()["count"] == 0


def test_filters_by_action_user_and_success(admin_api, log, user, other_user):
    assert actions(admin_api.get("/api/audit-logs?action=login")) == ["login", "login"]
    assert admin_api.get(f"/api/audit-logs?user={user.pk}").json()["count"] == 2
    assert admin_api.get("/api/audit-logs?user=BOB@example.com").json()["count"] == 2
    assert actions(admin_api.get("/api/audit-logs?success=false")) == ["login_failed"]
    assert admin_api.get("/api/audit-logs?success=true").json()["count"] == 3


def test_filters_by_a_time_window_with_inclusive_bounds(admin_api, user, monkeypatch):
    from audit import services as audit_services

    january, february = datetime(2026, 1, 15, tzinfo=UTC), datetime(2026, 2, 15, tzinfo=UTC)
    with transaction.atomic(), monkeypatch.context() as clock:
        for moment, action in ((january, "in_january"), (february, "in_february")):
            clock.setattr(audit_services.timezone, "now", lambda moment=moment: moment)
            audit.record(action=action, actor=user)

    def window(**bounds) -> list[str]:
        query = {key: value.isoformat() for key, value in bounds.items()}
        return actions(admin_api.get("/api/audit-logs", query))

    assert window(since=february) == ["in_february"]
    assert window(until=january) == ["in_january"]
    assert window(since=january, until=february) == ["in_february", "in_january"]
    assert window(since=february + timedelta(seconds=1)) == []


def test_filters_by_the_exact_resource(admin_api, api, log, user, other_user):
    with transaction.atomic():
        audit.record(action="launch_workspace", actor=user, resource="workspace:ws-10")
        audit.record(action="stop_workspace", actor=other_user, resource="workspace:ws-1")

    assert actions(admin_api.get("/api/audit-logs?resource=workspace:ws-1")) == [
        "stop_workspace",
        "launch_workspace",
    ]
    assert admin_api.get("/api/audit-logs?resource=workspace:ws-10").json()["count"] == 1
    assert admin_api.get("/api/audit-logs?resource=workspace:").json()["count"] == 0
    # A user's filter narrows their own entries; it never widens them.
    assert api.get("/api/audit-logs?resource=workspace:ws-1").json()["count"] == 1


@pytest.mark.parametrize(
    "query", ["since=yesterday", "until=2026-13-01", "success=maybe", "resource=" + "x" * 201]
)
def test_a_bad_filter_is_400(admin_api, query):
    response = admin_api.get(f"/api/audit-logs?{query}")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid"


def test_entries_are_paginated(admin_api, user):
    with transaction.atomic():
        for n in range(60):
            audit.record(action="bulk", actor=user, details={"n": n})

    first = admin_api.get("/api/audit-logs").json()
    second = admin_api.get("/api/audit-logs?page=2").json()

    assert first["count"] == 60
    assert len(first["results"]) == 50
    assert first["results"][0]["details"] == {"n": 59}
    assert first["next"].endswith("page=2")
    assert len(second["results"]) == 10
    assert second["next"] is None


class TestCsv:
    def rows(self, response) -> list[list[str]]:
        assert response.is_async  # under ASGI, a synchronous one is read whole first
        return list(csv.reader(io.StringIO(streamed_body(response).decode())))

    def test_format_csv_streams_every_matching_entry(self, admin_api, log):
        response = admin_api.get("/api/audit-logs?format=csv")

        assert response.status_code == 200
        assert response["Content-Type"] == "text/csv"
        assert response["Content-Disposition"].startswith('attachment; filename="audit-')
        rows = self.rows(response)
        assert rows[0][:6] == ["id", "created_at", "actor_id", "actor_email", "action", "resource"]
        assert [row[4] for row in rows[1:]] == [
            "login",
            "launch_workspace",
            "login_failed",
            "login",
        ]

    @pytest.mark.django_db(transaction=True)
    def test_under_asgi_the_first_row_is_sent_before_the_last_is_read(self, admin_user):
        """Daphne serves the export as the database yields it, not after reading it whole (a
        long log would sit in one process's memory, beside every relay it holds)."""
        with transaction.atomic():
            for n in range(30):
                audit.record(action="bulk", actor=admin_user, details={"n": n})
        read = []
        original = AuditEntry.from_db

        def counted(*args, **kwargs):
            read.append(1)
            return original(*args, **kwargs)

        sent = []  # (entries read so far, body chunk)

        async def download():
            requests = [{"type": "http.request", "body": b"", "more_body": False}]

            async def receive():
                if requests:
                    return requests.pop()
                await asyncio.Event().wait()  # the client stays to the end

            async def send(message):
                if message["type"] == "http.response.body" and message.get("body"):
                    sent.append((len(read), message["body"]))

            token = issue_tokens(admin_user, mfa=False)["token"]
            scope = {
                "type": "http",
                "asgi": {"version": "3.0"},
                "http_version": "1.1",
                "method": "GET",
                "scheme": "http",
                "path": "/api/audit-logs",
                "raw_path": b"/api/audit-logs",
                "query_string": b"format=csv",
                "root_path": "",
                "headers": [(b"host", b"testserver"), (b"x-access-token", token.encode())],
                "client": ("127.0.0.1", 5000),
                "server": ("testserver", 80),
            }
            await ASGIHandler()(scope, receive, send)

        with mock.patch.object(AuditEntry, "from_db", counted):
            async_to_sync(download)()

        assert sent[0] == (
            0,
            b"id,created_at,actor_id,actor_email,action,resource,success,"
            b"ip_address,user_agent,details,prev_hash,hash\r\n",
        )
        assert len(read) == 30 and len(sent) == 31

    def test_csv_honours_the_filters_and_the_callers_scope(self, api, log, user):
        rows = self.rows(api.get("/api/audit-logs?format=csv&action=login"))

        assert len(rows) == 2
        assert rows[1][3] == "alice@example.com"

    def test_csv_is_not_paginated(self, admin_api, user):
        with transaction.atomic():
            for n in range(120):
                audit.record(action="bulk", actor=user, details={"n": n})

        assert len(self.rows(admin_api.get("/api/audit-logs?format=csv"))) == 121

    def test_cells_a_spreadsheet_would_run_as_formulas_are_defused(self, admin_api, user):
        with transaction.atomic():
            audit.record(
                action="login",
                actor=user,
                origin=Origin(ip="10.0.0.9", user_agent='=HYPERLINK("http://x")'),
            )

        row = self.rows(admin_api.get("/api/audit-logs?format=csv"))[1]

        assert row[8] == '\'=HYPERLINK("http://x")'

    def test_errors_stay_json_even_when_csv_was_asked_for(self, anon, admin_api):
        unauthenticated = anon.get("/api/audit-logs?format=csv")
        invalid = admin_api.get("/api/audit-logs?format=csv&since=never")

        assert unauthenticated.status_code == 401
        assert unauthenticated.json()["code"] == "not_authenticated"
        assert invalid.status_code == 400
        assert invalid["Content-Type"].startswith("application/json")

    def test_an_unknown_format_is_400(self, admin_api):
        assert admin_api.get("/api/audit-logs?format=xml").status_code == 400


def test_sign_ins_and_failures_reach_the_log(anon, admin_api, user):
    anon.post("/api/auth/signin", {"email": user.email, "password": PASSWORD}, format="json")
    anon.post("/api/auth/signin", {"email": user.email, "password": "wrong"}, format="json")

    body = admin_api.get(f"/api/audit-logs?user={user.pk}").json()

    assert [item["action"] for item in body["results"]] == ["login_failed", "login"]
    assert [item["success"] for item in body["results"]] == [False, True]
    assert "wrong" not in str(body)


def test_the_audit_log_needs_a_signed_in_user(anon):
    assert anon.get("/api/audit-logs").status_code == 401
