"""The desktop viewer in a real browser through nginx configured as docs/deployment.md says:
over HTTPS and wss://, and through a rolling restart of the Daphne process holding its relay
connection, which the viewer survives with a fresh ticket through the other process while the
desktop keeps running (deployment.md, "Upgrading")."""

from __future__ import annotations

import pytest

from audit.models import AuditEntry
from sessions_app.models import WorkspaceSession
from tests.e2e.conftest import TIMEOUT_MS, sign_in
from tests.support.nginx import needs_nginx, running_gateway
from tests.support.viewer import launch_linux_desktop, wait_for_canvas, wait_for_state

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    needs_nginx,
]

RELAY = "/api/agents/workspace/vnc/"


@pytest.fixture
def gateway(django_db_setup, tmp_path):
    # A shell that reads no rc files, as in the other browser tests: it draws a prompt at once.
    with running_gateway(
        tmp_path, WORKGATE_LOCAL_DESKTOP_COMMAND="xterm -e bash --norc --noprofile"
    ) as started:
        yield started


@pytest.fixture
def page(browser, gateway):
    # The certificate is the test's own; 127.0.0.1 is in it, and the session cookie's domain.
    context = browser.new_context(
        base_url=f"https://127.0.0.1:{gateway.https_port}", ignore_https_errors=True
    )
    context.set_default_timeout(TIMEOUT_MS)
    yield context.new_page()
    context.close()


def test_the_viewer_survives_a_rolling_restart_behind_nginx(gateway, page, user, screenshot):
    opened = []
    page.on("websocket", lambda websocket: opened.append(websocket.url))
    sign_in(page, user, secure=True)  # over https, as production: a __Host- cookie
    session = launch_linux_desktop(page)  # the launch form's POST passes CSRF behind the proxy
    wait_for_canvas(page, "s.colours > 1")
    [holding] = gateway.serving(RELAY)

    gateway.daphnes[holding].close()  # as `systemctl restart workgate@800N` begins

    wait_for_state(page, "reconnecting")
    wait_for_state(page, "connected")
    wait_for_canvas(page, "s.colours > 1")
    screenshot(page, "viewer-after-restart")
    session.refresh_from_db()

    relay = f"wss://127.0.0.1:{gateway.https_port}{RELAY}{session.runtime_id}?ticket="
    assert len(opened) == 2 and all(url.startswith(relay) for url in opened)
    assert opened[0] != opened[1]  # a fresh ticket each time
    assert page.evaluate("window.workgateViewer.tickets") == 2
    assert gateway.serving(RELAY) == [0, 1]  # the second connection went to the other process
    assert session.status == WorkspaceSession.Status.READY  # the same desktop, still running
    issued = AuditEntry.objects.filter(action="ticket_issued", actor=user).count()
    connects = AuditEntry.objects.filter(action="vnc_connect", actor=user, success=True).count()
    assert (issued, connects) == (2, 2)
