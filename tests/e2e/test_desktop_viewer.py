"""The Linux desktop in a real browser: Xvfb + x11vnc + xterm behind the relay, shown by noVNC."""

from __future__ import annotations

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from audit.models import AuditEntry
from tests.e2e.conftest import sign_in
from tests.support.viewer import CANVAS, launch_linux_desktop, wait_for_canvas, wait_for_state

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def to_page(page, x: int, y: int) -> tuple[float, float]:
    """Where desktop pixel (x, y) is on the page, whatever the viewer's scaling."""
    box = page.locator("[data-screen] canvas").evaluate(
        "c => { const r = c.getBoundingClientRect();"
        " return [r.left, r.top, c.clientWidth / c.width]; }"
    )
    left, top, scale = box
    return left + x * scale, top + y * scale


def at_remote(page, x: int, y: int, button: str = "left", click_count: int = 1) -> None:
    page.mouse.click(*to_page(page, x, y), button=button, click_count=click_count)


def select_word_until(page, x: int, y: int, expected: str) -> None:
    """Double-click the word at (x, y) until the viewer's clipboard panel shows `expected`.

    xterm counts two clicks as a double-click only when they arrive within 250 ms, and
    x11vnc looks at the selection about once a second: on a loaded machine one try may miss.
    """
    check = f"() => document.querySelector('[data-clipboard-text]').value === {expected!r}"
    for _ in range(5):
        at_remote(page, x, y, click_count=2)
        try:
            page.wait_for_function(check, timeout=4000)
            return
        except PlaywrightTimeout:
            continue
    raise AssertionError(f"the desktop's selection never reached the panel as {expected!r}")


# Where xterm's lines are on the desktop (its default 6x13 font, starting at the top left).
def line_y(row: int) -> int:
    return 13 * row + 7


# Are there dark (text) pixels on xterm's line `row` between columns `from` and `to` (in
# characters)? Only the middle of the line is read, so a neighbour's descenders do not count.
LINE_HAS_TEXT = """(row, from = 0, to = 10) => {
  const canvas = document.querySelector("[data-screen] canvas");
  const context = canvas.getContext("2d");
  const pixels = context.getImageData(6 * from, 13 * row + 3, 6 * (to - from), 7).data;
  for (let i = 0; i < pixels.length; i += 4) if (pixels[i] < 128) return true;
  return false;
}"""


def test_the_linux_desktop_launches_and_shows_the_real_desktop_which_takes_typing(
    page, user, screenshot
):
    sign_in(page, user)

    session = launch_linux_desktop(page)

    assert session.status == "ready" and session.user == user
    # The xterm on the X display: more than one colour (a blank or failed screen is one).
    before = wait_for_canvas(page, "s.colours > 1")
    assert (before["width"], before["height"]) == (1280, 800)
    screenshot(page, "viewer-connected")

    # Focus the xterm (top left of the screen, where it opens) and, once its shell has drawn
    # a prompt, type into it.
    page.wait_for_function(f"() => ({LINE_HAS_TEXT})(0, 1, 8)")  # past the cursor's column
    before = page.evaluate(CANVAS)
    at_remote(page, 120, 120)
    page.keyboard.type("echo workgatetyped", delay=15)
    page.keyboard.press("Enter")

    after = wait_for_canvas(page, f"s.digest !== {before['digest']}")
    assert after["colours"] > 1
    screenshot(page, "viewer-typed")
    assert AuditEntry.objects.filter(action="vnc_connect", actor=user).count() == 1

    # The clipboard, both ways. Text sent from the panel becomes the desktop's selection: a
    # middle click pastes it after the shell's prompt ("bash-5.2# " is 10 characters), the
    # only text that could appear there. (xterm fetches the selection in its own time.)
    page.get_by_role("button", name="Clipboard").click()
    page.get_by_label("Clipboard", exact=True).fill("pasted from the browser")
    page.get_by_role("button", name="Send to desktop").click()
    at_remote(page, 200, 200, button="middle")
    page.wait_for_function(f"() => ({LINE_HAS_TEXT})(2, 12, 24)")
    # Text selected on the desktop arrives in the panel.
    select_word_until(page, 20, line_y(1), "workgatetyped")  # the echoed word
    screenshot(page, "viewer-clipboard")


def test_the_viewer_reconnects_with_a_new_ticket_when_the_relay_connection_drops(
    new_page, dropping_proxy, user, screenshot
):
    page = new_page(f"http://127.0.0.1:{dropping_proxy.port}")
    sign_in(page, user)
    launch_linux_desktop(page)
    wait_for_canvas(page, "s.colours > 1")
    assert page.evaluate("window.workgateViewer.tickets") == 1

    assert dropping_proxy.drop_websockets() == 1

    wait_for_state(page, "reconnecting")
    screenshot(page, "viewer-reconnecting")
    wait_for_state(page, "connected")
    wait_for_canvas(page, "s.colours > 1")
    assert page.evaluate("window.workgateViewer.tickets") == 2
    issued = AuditEntry.objects.filter(action="ticket_issued", actor=user).count()
    connects = AuditEntry.objects.filter(action="vnc_connect", actor=user).count()
    assert (issued, connects) == (2, 2)  # a second, fresh ticket opened the second connection
    screenshot(page, "viewer-reconnected")


def test_only_the_owner_can_open_the_viewer_and_stopping_it_there_ends_the_session(
    new_page, user, other_user, screenshot
):
    page = new_page()
    sign_in(page, user)
    session = launch_linux_desktop(page)

    intruder = new_page()
    sign_in(intruder, other_user)
    response = intruder.goto(f"/viewer/{session.id}")
    assert response.status == 404
    screenshot(intruder, "someone-elses-viewer")

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Stop session").click()

    page.get_by_role("heading", name="Session ended").wait_for()
    screenshot(page, "viewer-stopped")
    session.refresh_from_db()
    assert (session.status, session.end_reason) == ("terminated", "user_stop")
    assert AuditEntry.objects.filter(action="terminate_session", actor=user).count() == 1


def test_a_viewer_past_the_desktops_limit_is_told_so_and_connects_once_another_closes(
    new_page, user, screenshot
):
    """The e2e server lets two viewers onto one desktop (WORKGATE_VNC_MAX_VIEWERS=2): a third
    is refused by the relay (4429), says why instead of retrying, and connects when asked
    again after one of the others closed."""
    first = new_page()
    sign_in(first, user)
    launch_linux_desktop(first)
    second, third = first.context.new_page(), first.context.new_page()
    second.goto(first.url)
    wait_for_state(second, "connected")

    third.goto(first.url)
    wait_for_state(third, "failed")

    screenshot(third, "viewer-too-many-viewers")
    assert "as many viewers as it takes" in third.locator("[data-overlay-text]").inner_text()
    assert third.evaluate("window.workgateViewer.tickets") == 1  # no retry was scheduled
    refused = AuditEntry.objects.filter(action="vnc_connect", actor=user, success=False)
    assert [entry.details["refused"] for entry in refused] == ["too many viewers"]

    second.close()
    third.get_by_role("button", name="Connect again").click()
    wait_for_state(third, "connected")
    wait_for_canvas(third, "s.colours > 1")
