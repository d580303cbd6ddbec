"""Thirty parallel launches of one workspace by one user make exactly one session (PostgreSQL)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from audit.models import AuditEntry
from audit.selectors import audit_chain_first_break
from sessions_app.models import WorkspaceSession
from tests.support.sessions import launch

LAUNCHES = 30


@pytest.mark.django_db(transaction=True)
def test_thirty_parallel_launches_by_one_user_create_exactly_one_session(
    client_for, user, web_workspace
):
    barrier = threading.Barrier(LAUNCHES, timeout=60)

    def one_launch(_):
        try:
            client = client_for(user)
            barrier.wait()
            return launch(client, web_workspace.id)
        finally:
            connection.close()

    with ThreadPoolExecutor(LAUNCHES) as pool:
        responses = list(pool.map(one_launch, range(LAUNCHES)))

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] * (LAUNCHES - 1) + [201]
    assert len({response.json()["session_id"] for response in responses}) == 1
    assert WorkspaceSession.objects.count() == 1
    assert AuditEntry.objects.filter(action="launch_workspace").count() == 1
    assert audit_chain_first_break() is None


@pytest.mark.django_db(transaction=True)
def test_parallel_launches_of_different_workspaces_respect_the_session_limit(
    client_for, user, make_workspace, settings
):
    settings.WORKGATE_MAX_SESSIONS_PER_USER = 3
    workspaces = [make_workspace() for _ in range(8)]
    barrier = threading.Barrier(len(workspaces), timeout=60)

    def one_launch(workspace):
        try:
            client = client_for(user)
            barrier.wait()
            return launch(client, workspace.id)
        finally:
            connection.close()

    with ThreadPoolExecutor(len(workspaces)) as pool:
        responses = list(pool.map(one_launch, workspaces))

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201] * 3 + [409] * 5
    assert WorkspaceSession.objects.filter(status__in=WorkspaceSession.LIVE).count() == 3


def test_the_database_itself_refuses_a_second_live_session_of_one_workspace(user, web_workspace):
    def live_row():
        now = timezone.now()
        return WorkspaceSession.objects.create(
            user=user,
            workspace=web_workspace,
            workspace_name=web_workspace.name,
            workspace_type=web_workspace.type,
            status="ready",
            started_at=now,
            last_seen_at=now,
        )

    first = live_row()
    with pytest.raises(IntegrityError), transaction.atomic():
        live_row()

    WorkspaceSession.objects.filter(pk=first.pk).update(status="terminated")
    live_row()  # once the first has ended, a new live session is allowed
    assert WorkspaceSession.objects.count() == 2
