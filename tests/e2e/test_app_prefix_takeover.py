"""Prefix mode in Chromium (issue 21, found by the attacker review): a malicious app under
`/apps/<runtime-id>/` (prefix_mode_malicious_app.py beside this file) tries to replace the
user's HttpOnly gateway session cookie with its own (a Set-Cookie with two Path attributes:
browsers obey the last), and to register a service worker for the whole gateway origin
(Service-Worker-Allowed: /), which would answer the gateway's own pages, the sign-in included,
after the session has stopped and the proxy refuses the app."""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.db import connections
from django.test import override_settings

from tests.support import apps, processes

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

APP = Path(__file__).with_name("prefix_mode_malicious_app.py")


def in_a_thread(call):
    """Outside Playwright's loop (a stop's end-of-session messages are sent on commit)."""

    def run():
        try:
            return call()
        finally:
            connections.close_all()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(run).result(60)


def test_an_app_under_a_prefix_cannot_take_over_the_gateways_origin(
    app_settings, prefix_gateway, api, new_page
):
    name = settings.SESSION_COOKIE_NAME
    port = processes.free_port()
    with processes.running([sys.executable, APP, str(port), name], port=port):
        workspace = apps.web_workspace(f"http://127.0.0.1:{port}/", app_path_prefix_allowed=True)
        runtime = apps.launched_runtime(api, workspace)
        with override_settings(WORKGATE_APPS_DOMAIN=""):  # minted as prefix_gateway's
            ticket = httpx.URL(apps.app_url(api, runtime)).params["ticket"]
        page = new_page(prefix_gateway.base_url)
        page.context.add_cookies(
            [
                {
                    "name": name,
                    "value": "users-own-session",
                    "domain": "127.0.0.1",
                    "path": "/",
                    "httpOnly": True,
                    "secure": settings.SESSION_COOKIE_SECURE,
                    "sameSite": "Lax",
                }
            ]
        )
        page.goto(f"/apps/{runtime}/.workgate/enter?ticket={ticket}")
        page.wait_for_function("() => /^(registered|error)/.test(document.title)")
        worker = page.title()
        session_cookie = {
            cookie["path"]: cookie["value"]
            for cookie in page.context.cookies()
            if cookie["name"] == name
        }
        stopped = in_a_thread(lambda: api.post(f"/api/workspaces/{workspace.id}/stop"))
        after = page.context.new_page()
        after.goto(f"{prefix_gateway.base_url}/api/auth/signin")
        signin_page = after.content()

    assert stopped.status_code == 200
    assert session_cookie == {"/": "users-own-session"}, session_cookie
    assert worker.startswith("error"), worker
    assert "the app's worker answers" not in signin_page
