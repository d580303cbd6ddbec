from __future__ import annotations

import pytest

from tests.support.sessions import OVERLAY_IP
from workspaces.models import Workspace


@pytest.fixture
def make_workspace(db):
    counter = {"n": 0}

    def make(**fields) -> Workspace:
        counter["n"] += 1
        fields.setdefault("id", f"ws-test{counter['n']:04d}")
        fields.setdefault("name", f"Test workspace {counter['n']}")
        fields.setdefault("type", Workspace.Type.WEB)
        fields.setdefault("description", "A workspace made by a test.")
        fields.setdefault("requires_netbird", False)
        return Workspace.objects.create(**fields)

    return make


@pytest.fixture
def web_workspace(make_workspace):
    return make_workspace(id="ws-webapp01", name="Web app", url="https://app.example.com/")


@pytest.fixture
def tunnel_client(client_for):
    """An API client whose requests come from the NetBird overlay."""

    def make(user, **kwargs):
        return client_for(user, REMOTE_ADDR=OVERLAY_IP, **kwargs)

    return make
