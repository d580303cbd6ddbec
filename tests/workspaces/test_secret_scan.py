"""The suite-wide scan (tests/conftest.py) really does catch a stored secret in a response."""

from __future__ import annotations

import pytest
from django.http import JsonResponse

from tests.support.secret_scan import assert_no_stored_secret
from workspaces.models import Workspace

pytestmark = pytest.mark.django_db


def response_for(path: str, body: dict) -> JsonResponse:
    response = JsonResponse(body)
    response.request = {"PATH_INFO": path}
    return response


def test_the_scan_fails_a_response_that_carries_a_stored_desktop_secret():
    Workspace.objects.create(
        name="Kasm", type="linux", description="d", vnc_secret="kasm-basic-secret"
    )

    with pytest.raises(AssertionError, match="VNC secret"):
        assert_no_stored_secret(response_for("/api/workspaces", {"leak": "kasm-basic-secret"}))


def test_the_rfb_password_may_appear_only_in_a_ticket_response():
    Workspace.objects.create(name="Desk", type="linux", description="d", rfb_password="rfb-pass-9")
    leak = {"vncPassword": "rfb-pass-9"}

    assert_no_stored_secret(response_for("/api/agents/workspace/ticket", leak))
    with pytest.raises(AssertionError, match="RFB password"):
        assert_no_stored_secret(response_for("/api/agents/workspace/me", leak))
