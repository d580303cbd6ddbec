"""A desktop of one's own in a real browser: launched from the catalog, it is `starting` for a
moment (its container's desktop coming up), and the viewer waits for it without spending
tickets, then shows it."""

from __future__ import annotations

import pytest

from audit.models import AuditEntry
from sessions_app.models import WorkspaceSession
from tests.e2e.conftest import sign_in
from tests.support import processes
from tests.support.podman import remove_containers
from tests.support.viewer import VIEWER_URL, wait_for_canvas, wait_for_state
from workspaces.models import Workspace

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def container_gateway(podman_engine, tmp_path):
    """Daphne serving the app with the run's engine, sessions on networks of their own."""
    with processes.daphne(
        tmp_path / "daphne.log",
        SESSION_COOKIE_SECURE="0",
        WORKGATE_CONTAINER_ENGINES=podman_engine.url,
        WORKGATE_CONTAINER_DEPLOYMENT=podman_engine.label_scope,
        WORKGATE_CONTAINER_NETWORK_INTERNAL="1",
        WORKGATE_CONTAINER_STORAGE_LIMIT="0",
        WORKGATE_CONTAINER_RESOLUTION="800x600",
    ) as port:
        yield f"http://127.0.0.1:{port}"
    remove_containers(podman_engine)


def test_the_viewer_waits_for_a_starting_desktop_then_shows_it(
    container_gateway, podman_engine, new_page, user
):
    Workspace.objects.create(
        id="ws-own-desk",
        name="Own desktop",
        type="linux",
        description="A fresh desktop per launch",
        connection_type="vnc",
        requires_netbird=False,
        provisioner="container",
        container_image=podman_engine.image,
        cpu="1 vCPU",
        memory="512 MB",
    )
    page = new_page(container_gateway)
    sign_in(page, user)

    page.goto("/", wait_until="domcontentloaded")
    page.locator('.card[data-workspace="ws-own-desk"]').get_by_role("button", name="Launch").click()
    page.wait_for_url(VIEWER_URL)
    wait_for_state(page, "connected")
    screen = wait_for_canvas(page, "s.colours > 1")

    assert (screen["width"], screen["height"]) == (800, 600)
    assert WorkspaceSession.objects.get(user=user).status == "ready"
    # The wait read the session, not tickets: one ticket, for the one connection.
    assert AuditEntry.objects.filter(action="ticket_issued", actor=user).count() == 1
