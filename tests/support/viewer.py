"""The desktop viewer page in a real browser (Playwright): launching the Linux desktop from the
catalog, and waiting for the viewer's state and for what noVNC drew on its canvas."""

from __future__ import annotations

import re

from sessions_app.models import WorkspaceSession

VIEWER_URL = re.compile(r"/viewer/[0-9a-f-]{36}$")

# The remote screen as noVNC drew it: how many distinct colours, and a digest of every pixel.
CANVAS = """() => {
  const canvas = document.querySelector("[data-screen] canvas");
  const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  const colours = new Set();
  let digest = 0;
  for (let i = 0; i < pixels.length; i += 4) {
    const rgb = (pixels[i] << 16) | (pixels[i + 1] << 8) | pixels[i + 2];
    colours.add(rgb);
    digest = (Math.imul(digest, 31) + rgb) | 0;
  }
  return {width: canvas.width, height: canvas.height, colours: colours.size, digest};
}"""


def wait_for_state(page, state: str) -> None:
    page.wait_for_function(f"() => window.workgateViewer?.state === {state!r}")


def launch_linux_desktop(page) -> WorkspaceSession:
    page.goto("/", wait_until="domcontentloaded")
    card = page.locator('.card[data-workspace="ws-linux-desktop"]')
    card.get_by_role("button", name="Launch").click()
    page.wait_for_url(VIEWER_URL)
    wait_for_state(page, "connected")
    return WorkspaceSession.objects.get(workspace_id="ws-linux-desktop")


def wait_for_canvas(page, condition: str) -> dict:
    """Poll the canvas until `condition` (JS over `s`, the CANVAS result) holds; return it."""
    page.wait_for_function(f"() => {{ const s = ({CANVAS})(); return {condition}; }}")
    return page.evaluate(CANVAS)
