// The viewer of a web app behind the gateway (issue 21): a fresh single-use app ticket, then the
// whole tab goes to the app's own origin, which spends it for its app-session cookie. Apps are
// never framed: many refuse it (JupyterLab's frame-ancestors 'self'), and a SameSite=Lax cookie
// is not sent in a cross-site frame anyway. The button does the same again (a new ticket each
// time: a ticket opens the app once).

import { api } from "./api.js";

const root = document.querySelector("[data-viewer]");
const runtimeId = root.dataset.runtime;
const stateLabel = root.querySelector("[data-state-label]");
const overlayText = root.querySelector("[data-overlay-text]");
const openButton = root.querySelector('[data-action="open-app"]');

function say(state, text) {
  root.dataset.state = state;
  stateLabel.dataset.state = state;
  stateLabel.textContent = state === "failed" ? "Cannot open" : "Opening…";
  overlayText.textContent = text;
  openButton.disabled = state === "opening";
}

async function openApp() {
  say("opening", "Opening the app…");
  try {
    const ticket = await api("/api/agents/workspace/app-ticket", {
      method: "POST",
      body: { workspaceId: runtimeId },
    });
    window.location.assign(ticket.appUrl);
  } catch (error) {
    say("failed", error.message);
  }
}

openButton.addEventListener("click", openApp);
openApp();
