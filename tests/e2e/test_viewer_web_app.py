"""The viewer page of a web app through the gateway (issue 21), in Chromium: opened from the
gateway's own origin, it asks for an app ticket and sends the whole tab to the app's own origin
(never a frame), where the ticket becomes the app's cookie and the app answers."""

from __future__ import annotations

import pytest
from django.conf import settings

from sessions_app.models import WorkspaceSession
from tests.e2e.conftest import sign_in
from tests.support import apps

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_the_viewer_sends_the_tab_to_the_apps_own_origin(
    app_settings, app_gateway, httpbin_app, api, user, new_page
):
    workspace = apps.web_workspace(httpbin_app.url, name="httpbin")
    runtime = apps.launched_runtime(api, workspace)
    session = WorkspaceSession.objects.get(runtime_id=runtime)
    page = new_page(app_gateway.base_url)
    sign_in(page, user, secure=settings.SESSION_COOKIE_SECURE)

    page.goto(f"/viewer/{session.id}")
    page.wait_for_url(f"{app_gateway.origin(runtime)}/", timeout=15_000)

    assert "httpbin" in page.title().lower() or "httpbin" in page.content().lower()
    assert page.frames == [page.main_frame]  # the app is the page, not a frame in it
    cookies = {cookie["name"]: cookie for cookie in page.context.cookies()}
    assert cookies[apps.ORIGIN_COOKIE]["httpOnly"]
    assert cookies[apps.ORIGIN_COOKIE]["domain"] == app_gateway.host(runtime).split(":")[0]
