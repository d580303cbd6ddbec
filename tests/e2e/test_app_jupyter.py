"""JupyterLab through the app proxy in Chromium (issue 21): the user opens the app ticket's URL,
lands on the lab at the app's own origin (http://<runtime-id>.apps.localhost:<port>/, which
Chromium resolves to loopback itself), opens a terminal, types into it and sees the shell answer
over the lab's WebSocket; the lab's token is the workspace's app credential, added by the proxy.
A stop, or signing out everywhere, closes that WebSocket within a second, and the lab's origin
refuses the browser after it."""

from __future__ import annotations

import secrets
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connections

from tests.support import apps

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# The lab's xterm draws on a canvas: its text is read from the terminal's buffer, through the
# application object the lab exposes (the jupyter_app fixture starts it with
# expose_app_in_browser).
TERMINAL_TEXT = """() => {
    const widget = window.jupyterapp && window.jupyterapp.shell.currentWidget;
    const term = widget && widget.content && widget.content._term;
    if (!term) return "";
    const buffer = term.buffer.active;
    const lines = [];
    for (let i = 0; i < buffer.length; i++) lines.push(buffer.getLine(i).translateToString(true));
    return lines.join("\\n");
}"""

TERMINAL_STATUS = """() => {
    const widget = window.jupyterapp.shell.currentWidget;
    return widget.content.session.connectionStatus;
}"""


def open_terminal(page) -> None:
    page.wait_for_function("() => window.jupyterapp !== undefined")
    page.evaluate("async () => { await window.jupyterapp.restored; }")
    page.evaluate(
        "async () => { await window.jupyterapp.commands.execute('terminal:create-new'); }"
    )
    page.wait_for_function(f"() => ({TERMINAL_STATUS})() === 'connected'")
    page.locator(".jp-Terminal").last.click()


ENDINGS = {
    "a stop": lambda workspace: f"/api/workspaces/{workspace.id}/stop",
    "signing out everywhere": lambda workspace: "/api/auth/signout-everywhere",
}


@pytest.mark.parametrize("ending", ENDINGS)
def test_a_jupyterlab_terminal_answers_through_the_proxy_and_closes_at_the_end(
    app_settings, app_gateway, jupyter_app, api, new_page, screenshot, ending
):
    workspace = apps.jupyter_workspace(jupyter_app)
    runtime = apps.launched_runtime(api, workspace)
    page = new_page(app_gateway.origin(runtime))

    page.goto(apps.app_url(api, runtime))
    open_terminal(page)
    word = f"hello-{secrets.randbelow(10**6):06d}"
    page.keyboard.type(f"echo {word} | rev\n")
    page.wait_for_function(f"() => ({TERMINAL_TEXT})().includes({word[::-1]!r})")
    screenshot(page, "terminal")

    assert page.url.startswith(app_gateway.origin(runtime) + "/lab")
    cookies = {cookie["name"]: cookie for cookie in page.context.cookies()}
    assert cookies[apps.ORIGIN_COOKIE]["httpOnly"]
    assert cookies[apps.ORIGIN_COOKIE]["domain"] == app_gateway.host(runtime).split(":")[0]
    # The gateway never hands the lab's token (the workspace's app credential) to the browser;
    # the lab itself does: its page config carries the token the request was authenticated
    # with (security.md, "App proxy": an app may echo its credential).
    assert jupyter_app.token not in str(page.context.cookies())

    # In a thread of its own: ending a session or an account's sign-ins notifies the proxies
    # with async_to_sync, which refuses to run on this thread while Playwright's loop runs here.
    def end():
        try:
            return api.post(ENDINGS[ending](workspace))
        finally:
            connections.close_all()

    began = time.monotonic()
    with ThreadPoolExecutor(1) as worker:
        ended = worker.submit(end).result(60)
    page.wait_for_function(f"() => ({TERMINAL_STATUS})() !== 'connected'", timeout=5_000)
    took = time.monotonic() - began
    reloaded = page.goto(app_gateway.origin(runtime) + "/lab")

    assert ended.status_code == 200
    assert took < 1.0, took
    assert reloaded.status in (401, 403)
    assert reloaded.json()["success"] is False
