"""Every page in a real browser, with a screenshot of each; the audit CSV downloads."""

from __future__ import annotations

import pyotp
import pytest

from accounts.models import Profile
from sessions_app.models import WorkspaceSession
from tests.e2e.conftest import sign_in
from workspaces.models import Workspace
from workspaces.selectors import workspace_list

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_an_admin_walks_through_every_page(page, admin_user, user, screenshot):
    workspace_list()  # the five defaults
    wiki = Workspace.objects.create(
        name="Team wiki",
        type="web",
        description="Docs",
        url="http://127.0.0.1:9/",  # nothing listens there: the frame shows the browser's error
        connection_type="web",
        requires_netbird=False,
    )
    sign_in(page, admin_user)

    page.goto("/", wait_until="domcontentloaded")
    page.locator(f'.card[data-workspace="{wiki.id}"]').get_by_role("button", name="Launch").click()
    page.wait_for_url("**/viewer/*")
    frame = page.locator("iframe")
    assert frame.get_attribute("sandbox").startswith("allow-scripts")
    assert page.get_by_role("link", name="Open in a new tab").get_attribute("target") == "_blank"
    screenshot(page, "viewer-web")

    page.get_by_role("link", name="Sessions").first.click()
    page.get_by_role("heading", name="Sessions").wait_for()
    assert page.locator("tbody tr").count() == 1
    screenshot(page, "sessions")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Audit log").click()
    page.get_by_role("heading", name="Audit log").wait_for()
    assert page.locator("tbody tr code", has_text="launch_workspace").count() == 1
    screenshot(page, "audit")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download CSV").click()
    csv = download.value.path().read_text()
    assert csv.splitlines()[0].startswith("id,") or "action" in csv.splitlines()[0]
    assert "launch_workspace" in csv

    page.get_by_role("link", name="Administration", exact=True).click()
    page.get_by_role("link", name="Workgate administration").wait_for()
    screenshot(page, "admin")
    page.goto(f"/admin/workspaces/workspace/{wiki.id}/change/")
    page.get_by_role("heading", name="Change workspace").wait_for()
    # Swagger UI starts from a script file, not an inline one, under the pages' CSP.
    page.goto("/api/docs")
    page.locator(".swagger-ui .info .title", has_text="Workgate").wait_for()
    page.go_back()
    page.goto("/admin/")
    # The admin links back to the pages (its index also lists the Audit log app).
    page.get_by_role("navigation", name="Workgate").get_by_role("link", name="Audit log").click()
    page.get_by_role("heading", name="Audit log").wait_for()


def test_a_refused_launch_is_explained_on_the_catalog(page, user, screenshot):
    workspace_list()
    Profile.objects.update_or_create(
        user=user, defaults={"mfa_enabled": True, "totp_secret": pyotp.random_base32()}
    )
    sign_in(page, user, mfa=False)  # a session whose sign-in verified no one-time code
    page.goto("/", wait_until="domcontentloaded")
    assert page.get_by_text("MFA required, not verified").is_visible()

    card = page.locator('.card[data-workspace="ws-secure-browser"]')
    card.get_by_role("button", name="Launch").click()

    alert = page.locator(".messages li.error")
    alert.wait_for()
    assert "one-time code" in alert.inner_text()
    assert not WorkspaceSession.objects.exists()
    screenshot(page, "catalog-refused")
