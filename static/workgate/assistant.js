// The assistant page: one turn at a time over the SSE endpoint, read with fetch streaming.
//
// Events (see the API docs): connected, stream {delta, prompt}, thinking {id, round, delta | text,
// done}, tool_call, tool_result, complete, error, done. Stop aborts the request; the server sees
// the disconnect and saves the turn as cancelled.

import { csrfToken } from "./api.js";

const ENDPOINT = "/api/ai/personal-stream/qanda-stream";

const chat = document.querySelector("[data-chat]");
const turns = chat.querySelector("[data-turns]");
const form = chat.querySelector("[data-composer]");
const input = form.querySelector("textarea");
const sendButton = form.querySelector("[data-send]");
const stopButton = form.querySelector("[data-stop]");
const status = chat.querySelector("[data-chat-status]");
const picker = chat.querySelector("[data-assistant]"); // absent when only the default exists
const template = document.querySelector("#turn-template");

let controller = null;
let course = chat.dataset.courseId
  ? { course_id: chat.dataset.courseId, course_name: chat.dataset.courseName }
  : null;

function setBusy(busy) {
  chat.dataset.busy = String(busy);
  sendButton.disabled = busy;
  stopButton.hidden = !busy;
  input.readOnly = busy;
}

function element(tag, className, text) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  if (text !== undefined) el.textContent = text;
  return el;
}

function pretty(value) {
  if (typeof value === "string") {
    try {
      return JSON.stringify(JSON.parse(value), null, 2);
    } catch {
      return value;
    }
  }
  return JSON.stringify(value, null, 2);
}

// One turn's view, filled in as events arrive.
class TurnView {
  constructor(question) {
    this.root = template.content.firstElementChild.cloneNode(true);
    this.root.dataset.status = "streaming";
    this.root.querySelector("[data-question]").textContent = question;
    this.trace = this.root.querySelector("[data-trace]");
    this.answer = this.root.querySelector("[data-answer]");
    this.meta = this.root.querySelector("[data-meta]");
    this.rounds = new Map();
    this.tools = new Map();
    this.text = "";
    turns.append(this.root);
    this.root.scrollIntoView({ block: "end" });
  }

  handle(event) {
    switch (event.type) {
      case "connected":
        this.meta.textContent = "Answering…";
        break;
      case "stream":
        this.text += event.delta ?? "";
        this.answer.textContent = this.text;
        break;
      case "thinking":
        this.thinking(event);
        break;
      case "tool_call":
        this.toolCall(event);
        break;
      case "tool_result":
        this.toolResult(event);
        break;
      case "complete":
        if (Array.isArray(event.outputs) && event.outputs.length) {
          this.text = event.outputs.join("\n");
          this.answer.textContent = this.text;
        }
        this.finish("complete", [event.model, tokens(event.usage)].filter(Boolean).join(" · "));
        break;
      case "error":
        this.finish("error", event.error?.message || "The assistant could not answer.");
        break;
      default:
        break;
    }
  }

  thinking(event) {
    let block = this.rounds.get(event.id);
    if (!block) {
      block = element("details", "thinking");
      block.open = true;
      block.dataset.round = String(event.round ?? this.rounds.size);
      block.append(element("summary", "", `Thinking (round ${Number(block.dataset.round) + 1})…`));
      block.append(element("div", "text", ""));
      this.rounds.set(event.id, block);
      this.trace.append(block);
    }
    const text = block.querySelector(".text");
    if (event.done) {
      text.textContent = event.text ?? text.textContent;
      block.querySelector("summary").textContent = `Reasoning, round ${Number(block.dataset.round) + 1}`;
      block.open = false;
      block.dataset.done = "true";
    } else {
      text.textContent += event.delta ?? "";
    }
  }

  toolCall(event) {
    const card = element("section", "tool");
    card.dataset.callId = event.call_id;
    card.dataset.status = "running";
    const header = element("header");
    header.append(element("span", "name", event.displayInfo?.label || event.name));
    header.append(element("span", "badge", event.name));
    const state = element("span", "badge status-starting", "running");
    state.dataset.toolState = "";
    header.append(state);
    header.append(element("span", "duration", ""));
    card.append(header);
    const details = element("details");
    details.append(element("summary", "", "Details"));
    details.append(element("pre", "arguments", pretty(event.arguments ?? {})));
    card.append(details);
    this.tools.set(event.call_id, card);
    this.trace.append(card);
  }

  toolResult(event) {
    const card = this.tools.get(event.call_id);
    if (!card) return;
    const ok = event.success !== false;
    card.dataset.status = ok ? "ok" : "failed";
    const state = card.querySelector("[data-tool-state]");
    state.textContent = ok ? "done" : "failed";
    state.className = `badge ${ok ? "ok" : "bad"}`;
    if (event.responseDurationMs !== undefined) {
      card.querySelector(".duration").textContent = `${event.responseDurationMs} ms`;
    }
    card.querySelector("details").append(element("pre", "response", pretty(event.response ?? "")));
  }

  finish(state, note) {
    if (this.root.dataset.status !== "streaming") return;
    this.root.dataset.status = state;
    const labels = { complete: "", error: "Error", cancelled: "Stopped" };
    this.meta.textContent = [labels[state], note].filter(Boolean).join(": ");
    if (state === "error") this.meta.classList.add("field-error");
    for (const card of this.trace.querySelectorAll('.tool[data-status="running"]')) {
      card.dataset.status = "failed";
      card.querySelector("[data-tool-state]").textContent = "interrupted";
    }
  }
}

function tokens(usage) {
  if (!usage) return "";
  const total = usage.total_tokens ?? usage.totalTokens;
  return total ? `${total} tokens` : "";
}

// Server-Sent Events over a fetch body: blank-line separated blocks of `data:` lines.
async function* readEvents(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let end;
    while ((end = buffer.search(/\r?\n\r?\n/)) !== -1) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, "");
      const data = block
        .split(/\r?\n/)
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).replace(/^ /, ""))
        .join("\n");
      if (data) yield JSON.parse(data);
    }
  }
}

async function ask(question) {
  if (!course) {
    course = { course_id: crypto.randomUUID(), course_name: question.slice(0, 60) };
  }
  const view = new TurnView(question);
  controller = new AbortController();
  setBusy(true);
  status.textContent = "The assistant is answering.";
  try {
    const response = await fetch(ENDPOINT, {
      method: "POST",
      credentials: "same-origin",
      signal: controller.signal,
      headers: {
        // No `Accept: text/event-stream`: the API negotiates JSON renderers and would answer 406.
        "Content-Type": "application/json",
        "X-CSRFToken": csrfToken(),
      },
      body: JSON.stringify({
        inputs: [question],
        requestArgs: {
          selectedCourse: course,
          userTimezone: Intl.DateTimeFormat().resolvedOptions().timeZone,
          // The picked assistant (null: the default); the conversation remembers the pick.
          ...(picker ? { assistantId: picker.value || null } : {}),
        },
      }),
    });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      view.finish("error", body.detail || `The server answered ${response.status}.`);
      return;
    }
    for await (const event of readEvents(response)) {
      if (event.type === "done") break;
      view.handle(event);
    }
    view.finish("error", "The answer stopped before it was complete.");
    remember();
  } catch (error) {
    if (error.name === "AbortError") {
      view.finish("cancelled", "you stopped this answer");
      remember();
    } else {
      view.finish("error", "The connection to the server was lost.");
    }
  } finally {
    controller = null;
    setBusy(false);
    status.textContent = "";
    input.focus();
  }
}

// After the first turn, the address names the conversation, so a reload shows it again.
function remember() {
  const url = new URL(window.location.href);
  if (url.searchParams.get("course") !== course.course_id) {
    url.searchParams.set("course", course.course_id);
    window.history.replaceState(null, "", url);
  }
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const question = input.value.trim();
  if (!question || controller) return;
  input.value = "";
  ask(question);
});

input.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    form.requestSubmit();
  }
});

stopButton.addEventListener("click", () => controller?.abort());

setBusy(false);
