"""Every HTML page carries the Content Security Policy; an inline script runs only with the
nonce of its own response. (The e2e tests fail on any refusal a real browser reports.)"""

from __future__ import annotations

import re

import pytest
from django.utils import timezone

from core.csp import CONTENT_SECURITY_POLICY
from sessions_app.models import WorkspaceSession
from tests.support.workspaces import make_web_workspace

pytestmark = pytest.mark.django_db


def policy(response) -> dict[str, str]:
    header = response["Content-Security-Policy"]
    return dict(directive.split(" ", 1) for directive in header.split("; "))


def test_pages_allow_scripts_only_from_workgate_and_may_not_be_framed(browser_for, user, client):
    for response in (client.get("/login"), browser_for(user).get("/")):
        directives = policy(response)
        assert re.fullmatch(r"'self' 'nonce-[\w-]{22}'", directives["script-src"])
        assert directives["frame-ancestors"] == "'none'"
        assert directives["object-src"] == "'none'" and directives["base-uri"] == "'none'"
        assert directives["connect-src"] == "'self'"
        assert directives["img-src"] == "'self' data: https: http:"  # as image_url allows
    assert policy(client.get("/login"))["script-src"] != policy(client.get("/login"))["script-src"]


def test_the_viewers_import_map_carries_its_responses_nonce(browser_for, user):
    workspace = make_web_workspace(
        type="linux", connection_type="vnc", provisioner="static", vnc_target="tcp://127.0.0.1:5999"
    )
    session = WorkspaceSession.objects.create(
        user=user,
        workspace=workspace,
        workspace_name="Desk",
        workspace_type="linux",
        status=WorkspaceSession.Status.READY,
        started_at=timezone.now(),
        last_seen_at=timezone.now(),
    )

    page = browser_for(user).get(f"/viewer/{session.id}")

    nonce = re.search(r"'nonce-([\w-]+)'", page["Content-Security-Policy"])[1]
    assert f'<script type="importmap" nonce="{nonce}">' in page.content.decode()


def test_static_html_runs_no_inline_script_and_is_never_framed(client):
    response = client.get("/static/drf_spectacular_sidecar/swagger-ui-dist/oauth2-redirect.html")

    assert response.status_code == 200
    assert policy(response)["script-src"] == "'self'"
    assert policy(response)["frame-ancestors"] == "'none'"
    assert response["X-Frame-Options"] == "DENY"


def test_json_answers_carry_no_page_policy(api):
    assert "Content-Security-Policy" not in api.get("/api/auth/me")


def test_the_policy_names_every_directive_once():
    names = [part.split(" ", 1)[0] for part in CONTENT_SECURITY_POLICY.split("; ")]
    assert len(names) == len(set(names))
