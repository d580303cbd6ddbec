"""Two first requests that both find the catalog empty create the five defaults once, not ten."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from workspaces import selectors
from workspaces.models import Workspace

RACERS = 4


@pytest.mark.django_db(transaction=True)
def test_racing_first_requests_create_the_defaults_exactly_once(client_for, user, monkeypatch):
    # Hold every request at the insert until all of them have seen the empty table, so they
    # really do race instead of happening to run one after another.
    barrier = threading.Barrier(RACERS, timeout=30)
    insert = selectors.insert_default_workspaces

    def insert_together():
        barrier.wait()
        return insert()

    monkeypatch.setattr(selectors, "insert_default_workspaces", insert_together)

    def first_request(_):
        try:
            return client_for(user).get("/api/workspaces")
        finally:
            connection.close()

    with ThreadPoolExecutor(RACERS) as pool:
        responses = list(pool.map(first_request, range(RACERS)))

    assert [response.status_code for response in responses] == [200] * RACERS
    for response in responses:
        assert len(response.json()) == 5
    assert Workspace.objects.count() == 5
