// The desktop viewer: noVNC through Workgate's relay, one fresh single-use ticket per connection.
//
// States: connecting -> connected -> (reconnecting -> connected)* -> ended | disconnected | failed.
// A dropped connection is retried with growing, jittered delays, and every attempt asks for a new
// ticket: a ticket opens exactly one connection, so reusing the last one could never work.

import RFB from "novnc/core/rfb.js";
import { api } from "./api.js";

const root = document.querySelector("[data-viewer]");
const sessionId = root.dataset.session;
const runtimeId = root.dataset.runtime;
const screen = root.querySelector("[data-screen]");
const stage = root.querySelector("[data-stage]");
const stateLabel = root.querySelector("[data-state-label]");
const overlay = root.querySelector("[data-overlay]");
const overlayText = root.querySelector("[data-overlay-text]");
const overlayActions = root.querySelector("[data-overlay-actions]");
const clipboardPanel = root.querySelector("[data-clipboard]");
const clipboardText = root.querySelector("[data-clipboard-text]");
const clipboardNote = root.querySelector("[data-clipboard-note]");
const modeSelect = root.querySelector('[data-action="mode"]');
const button = (name) => root.querySelector(`[data-action="${name}"]`);

const BACKOFF_MS = [1000, 2000, 4000, 8000, 15000];
const LABELS = {
  connecting: "Connecting…",
  connected: "Connected",
  reconnecting: "Reconnecting…",
  disconnected: "Disconnected",
  failed: "Cannot connect",
  ended: "Session ended",
};

let rfb = null;
let wanted = true; // false once the person disconnects, stops, or the session ends
let failures = 0; // consecutive attempts that did not reach "connected"
let retryTimer = null;
let tickets = 0;
const STARTING_POLL_MS = 1000;
let refusal = ""; // set when the VNC server refuses the password

// Relay refusals that another try would only repeat (vnc_proxy/close_codes.py).
const FINAL_CLOSES = {
  4403: "The gateway refused this connection to the desktop (it may be reachable only through the encrypted tunnel, or no longer shared with you).",
  4429: "This desktop already has as many viewers as it takes. Close another viewer of it, then connect again.",
};

function setState(state, message = "") {
  root.dataset.state = state;
  stateLabel.dataset.state = state;
  stateLabel.textContent = LABELS[state];
  overlay.hidden = state === "connected";
  overlayText.textContent = message || LABELS[state];
  overlayActions.hidden = !["disconnected", "failed"].includes(state);
  for (const name of ["ctrlaltdel", "clipboard-send"]) button(name).disabled = state !== "connected";
  button("disconnect").textContent = state === "disconnected" || state === "failed" ? "Connect" : "Disconnect";
}

function ended(message) {
  wanted = false;
  clearTimeout(retryTimer);
  setState("ended", message);
  overlayText.append(" ");
  const back = document.createElement("a");
  back.href = "/";
  back.textContent = "Back to the workspaces";
  overlayText.append(back);
  for (const el of root.querySelectorAll("[data-action]:not([data-action='newtab'])")) el.disabled = true;
  root.querySelector("[data-stop]")?.remove();
}

// The session's status ("starting", "ready", "terminated"...; "gone" once it no longer exists),
// or null when the server cannot tell us right now.
async function sessionStatus() {
  try {
    return (await api(`/api/sessions/${sessionId}`)).status;
  } catch (error) {
    return error.status === 404 ? "gone" : null;
  }
}

// Is the session still live? true / false, or null when the server cannot tell us right now.
async function sessionLive() {
  const status = await sessionStatus();
  return status === null ? null : ["starting", "ready"].includes(status);
}

// A desktop of one's own is still starting: watch the session until it is ready, then ask for
// a ticket (tickets are rate-limited; reading the session is not, and spends nothing).
async function whenStarted() {
  setState("connecting", "Starting your desktop…");
  while (wanted) {
    await new Promise((resolve) => { retryTimer = setTimeout(resolve, STARTING_POLL_MS); });
    const status = await sessionStatus();
    if (status === null || status === "starting") continue; // look again
    return status === "ready" ? connect() : ended("This session has ended.");
  }
}

function scheduleRetry(delayMs) {
  if (!wanted) return;
  failures += 1;
  const base = delayMs ?? BACKOFF_MS[Math.min(failures - 1, BACKOFF_MS.length - 1)];
  const wait = Math.round(base * (1 + Math.random() * 0.3));
  setState("reconnecting", `Connection lost. Trying again in ${Math.ceil(wait / 1000)} s (attempt ${failures})…`);
  clearTimeout(retryTimer);
  retryTimer = setTimeout(connect, wait);
}

function applyMode() {
  if (!rfb) return;
  const mode = modeSelect.value;
  rfb.scaleViewport = mode === "scale";
  rfb.resizeSession = mode === "resize";
  rfb.clipViewport = false;
}

async function connect() {
  clearTimeout(retryTimer);
  if (!wanted) return;
  setState(failures ? "reconnecting" : "connecting", failures ? "Reconnecting to the desktop…" : "");
  let ticket;
  try {
    ticket = await api("/api/agents/workspace/ticket", { method: "POST", body: { workspaceId: runtimeId } });
  } catch (error) {
    if (error.status === 401) {
      wanted = false;
      setState("failed", "Your sign-in has expired. Reload the page to sign in again.");
      return;
    }
    if (error.status === 403) {
      wanted = false;
      const hint = error.code === "mfa_required"
        ? " Sign out and sign in again with your one-time code."
        : " Reload the page and try again.";
      setState("failed", `${error.message}${hint}`);
      return;
    }
    if (error.status === 404) return ended("This session has ended.");
    if (error.status === 409 && (await sessionLive()) === false) return ended("This session has ended.");
    if (error.status === 409 && error.code === "not_ready") return whenStarted();
    if (error.status === 429) return scheduleRetry(15000);
    return scheduleRetry();
  }
  tickets += 1;
  root.dataset.tickets = String(tickets);
  refusal = "";

  // The viewer opens the WebSocket itself, to read the relay's close code (noVNC reports none).
  const socket = new WebSocket(ticket.vncUrl, ["binary"]);
  let closedWith = 0;
  socket.addEventListener("close", (event) => { closedWith = event.code; });
  let client;
  try {
    client = new RFB(screen, socket, {
      credentials: { password: ticket.vncPassword },
      shared: true,
    });
  } catch (error) {
    socket.close(); // it would hold the spent ticket's place on the desktop
    throw error;
  }
  rfb = client;
  applyMode();
  client.addEventListener("connect", () => {
    failures = 0;
    setState("connected");
    client.focus();
  });
  client.addEventListener("credentialsrequired", () => {
    client.sendCredentials({ password: ticket.vncPassword });
  });
  client.addEventListener("securityfailure", (event) => {
    refusal = event.detail.reason || "The desktop refused the connection.";
  });
  client.addEventListener("desktopname", (event) => {
    document.title = `${event.detail.name} · Workgate`;
  });
  client.addEventListener("clipboard", (event) => {
    clipboardText.value = event.detail.text;
    clipboardNote.textContent = "Received from the desktop.";
  });
  client.addEventListener("disconnect", () => onDisconnect(client, closedWith));
}

async function onDisconnect(client, closedWith) {
  if (client !== rfb) return;
  rfb = null;
  if (!wanted) {
    if (root.dataset.state !== "ended") setState("disconnected", "You disconnected from the desktop.");
    return;
  }
  if (refusal) {
    wanted = false;
    setState("failed", `The desktop refused the connection: ${refusal}`);
    return;
  }
  if (FINAL_CLOSES[closedWith]) {
    wanted = false;
    setState("failed", FINAL_CLOSES[closedWith]);
    return;
  }
  const live = await sessionLive();
  if (live === false) return ended("This session has ended.");
  scheduleRetry();
}

// --- The toolbar ---------------------------------------------------------------------------

button("disconnect").addEventListener("click", () => {
  if (rfb) {
    wanted = false;
    clearTimeout(retryTimer);
    rfb.disconnect();
  } else {
    wanted = true;
    failures = 0;
    connect();
  }
});
button("reconnect").addEventListener("click", () => {
  wanted = true;
  failures = 0;
  connect();
});

button("fullscreen").addEventListener("click", async () => {
  if (document.fullscreenElement) await document.exitFullscreen();
  else await stage.requestFullscreen().catch(() => {});
});
document.addEventListener("fullscreenchange", () => {
  button("fullscreen").setAttribute("aria-pressed", String(Boolean(document.fullscreenElement)));
  rfb?.focus();
});

modeSelect.value = localStorage.getItem("workgate.viewer.mode") || "scale";
modeSelect.addEventListener("change", () => {
  localStorage.setItem("workgate.viewer.mode", modeSelect.value);
  applyMode();
});

button("clipboard").addEventListener("click", () => {
  clipboardPanel.hidden = !clipboardPanel.hidden;
  button("clipboard").setAttribute("aria-pressed", String(!clipboardPanel.hidden));
  if (!clipboardPanel.hidden) clipboardText.focus();
});
button("clipboard-send").addEventListener("click", () => {
  if (!rfb) return;
  rfb.clipboardPasteFrom(clipboardText.value);
  clipboardNote.textContent = "Sent to the desktop.";
  rfb.focus();
});

button("ctrlaltdel").addEventListener("click", () => {
  rfb?.sendCtrlAltDel();
  rfb?.focus();
});

// Stopping submits the page's form; stop reconnecting first so the relay's close is not retried.
// (On document, after app.js's listener, so a cancelled confirmation leaves the connection alone.)
document.addEventListener("submit", (event) => {
  if (!event.target.matches("[data-stop]") || event.defaultPrevented) return;
  wanted = false;
  clearTimeout(retryTimer);
  rfb?.disconnect();
});

// For people driving the page from a script (and the browser tests): read-only state.
window.workgateViewer = {
  get state() { return root.dataset.state; },
  get tickets() { return tickets; },
  get rfb() { return rfb; },
};

connect();
