"""`manage.py reap_sessions`: idle and over-age sessions end (audited); spent tickets go."""

from __future__ import annotations

import uuid
from datetime import timedelta
from io import StringIO

import pytest
from django.apps import apps
from django.core.management import CommandError, call_command
from django.utils import timezone

from audit.models import AuditEntry
from sessions_app.models import WorkspaceSession
from sessions_app.services import sessions_reap
from tests.support.sessions import launch
from vnc_proxy.services import tickets_prune
from workspaces.models import Workspace

pytestmark = pytest.mark.django_db


@pytest.fixture
def live_session(api, web_workspace):
    def make():
        session_id = launch(api, web_workspace.id).json()["session_id"]
        return WorkspaceSession.objects.get(pk=session_id)

    return make


def age(session, *, started: int, seen: int) -> None:
    """Move a session's start and last activity `started` / `seen` seconds into the past."""
    now = timezone.now()
    WorkspaceSession.objects.filter(pk=session.pk).update(
        started_at=now - timedelta(seconds=started), last_seen_at=now - timedelta(seconds=seen)
    )


def test_a_session_idle_past_the_timeout_is_ended_and_audited(live_session, web_workspace):
    session = live_session()
    age(session, started=4000, seen=3601)

    out = StringIO()
    call_command("reap_sessions", stdout=out)

    session.refresh_from_db()
    assert session.status == "terminated"
    assert session.end_reason == "idle_timeout"
    assert session.ended_at is not None
    assert Workspace.objects.get(pk=web_workspace.pk).status == "available"
    entry = AuditEntry.objects.get(action="session_expired")
    assert entry.actor is None
    assert entry.resource == f"session:{session.id}"
    assert entry.details["reason"] == "idle_timeout"
    assert out.getvalue().startswith("reaped 1 session(s)")


def test_a_session_older_than_the_maximum_age_is_ended_even_if_active(live_session):
    session = live_session()
    age(session, started=43201, seen=5)

    assert sessions_reap() == 1

    session.refresh_from_db()
    assert session.end_reason == "max_age"


def test_an_active_session_is_left_alone(live_session):
    session = live_session()
    age(session, started=3000, seen=3000)

    assert sessions_reap() == 0

    session.refresh_from_db()
    assert session.status == "ready"
    assert not AuditEntry.objects.filter(action="session_expired").exists()


def test_the_timeouts_come_from_settings_and_time_can_be_injected(live_session, settings):
    settings.WORKGATE_SESSION_IDLE_TIMEOUT = 600
    session = live_session()

    assert sessions_reap(now=timezone.now() + timedelta(seconds=599)) == 0
    assert sessions_reap(now=timezone.now() + timedelta(seconds=601)) == 1

    session.refresh_from_db()
    assert session.end_reason == "idle_timeout"


def test_a_session_stuck_starting_is_ended_so_the_next_launch_starts_afresh(
    live_session, api, web_workspace
):
    session = live_session()
    WorkspaceSession.objects.filter(pk=session.pk).update(status="starting")
    age(session, started=301, seen=301)

    assert sessions_reap() == 1

    session.refresh_from_db()
    assert session.end_reason == "start_abandoned"
    assert launch(api, web_workspace.id).json()["session_id"] != str(session.id)


def test_ended_sessions_are_not_reaped_again(live_session):
    session = live_session()
    age(session, started=90000, seen=90000)
    sessions_reap()

    assert sessions_reap() == 0
    assert AuditEntry.objects.filter(action="session_expired").count() == 1


def test_loop_mode_keeps_reaping_until_interrupted(live_session, monkeypatch):
    from config.management.commands import reap_sessions

    naps = []

    def sleep(seconds):
        naps.append(seconds)
        if len(naps) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(reap_sessions.time, "sleep", sleep)
    # It would close the test's own connection, which holds the test's transaction.
    monkeypatch.setattr(reap_sessions, "close_old_connections", lambda: None)
    out = StringIO()

    call_command("reap_sessions", "--loop", "30", stdout=out)

    assert naps == [30, 30]
    assert out.getvalue().count("reaped") == 2


def test_loop_needs_a_positive_interval():
    with pytest.raises(CommandError):
        call_command("reap_sessions", "--loop", "0")


def test_used_and_expired_tickets_are_pruned_and_live_ones_kept(live_session, user):
    try:
        ticket_model = apps.get_model("vnc_proxy", "Ticket")
    except LookupError:
        pytest.skip("vnc_proxy has no Ticket model in this tree")
    session = live_session()
    now = timezone.now()

    def ticket(**fields):
        fields.setdefault("expires_at", now + timedelta(seconds=30))
        return ticket_model.objects.create(
            jti=uuid.uuid4().hex,
            session=session,
            user=user,
            issued_at=now - timedelta(seconds=30),
            **fields,
        )

    fresh = ticket()
    ticket(used_at=now - timedelta(seconds=5))
    ticket(expires_at=now - timedelta(seconds=1))

    assert tickets_prune(now=now) == 2
    assert list(ticket_model.objects.values_list("jti", flat=True)) == [fresh.jti]
