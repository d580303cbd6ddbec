"""The offline assistant: deterministic, no model weights, acting only through the tools.

It recognises a handful of intents ("what is running?", "list my workspaces", "search for
browser", "open my Linux desktop", "stop the Linux desktop"), streams a short plan as its one
thinking round, asks the engine for tool calls one round at a time, and writes its answer from the
tools' results in small deltas. Same question and same data, same answer.

It has no tokenizer, so it reports words as tokens: each round's input is the question it read
and the tool results it was given so far, its output the words it wrote (thinking, answer and the
tool call it asked for).
"""

from __future__ import annotations

import asyncio
import json
import re
import unicodedata
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime

from streaming.providers.base import (
    ModelEvent,
    ModelRequest,
    ModelSession,
    TextChunk,
    ThinkingChunk,
    ToolOutcome,
    ToolRequest,
    UsageReport,
)

NAME = "builtin"

_STOP = re.compile(r"\b(?:stop|close|shut\s*down|end|terminate|kill|quit)\b", re.I)
_SEARCH = re.compile(r"\b(?:search|find|look)(?:\s+(?:for|up))?\b\s*(?P<query>.*)", re.I)
_STATUS = re.compile(
    r"\bwhat(?:'s|\s+is|\s+are)?\s+(?:\w+\s+)?(?:running|open|active|live)\b"
    r"|\b(?:running|active|live|my|open)\s+sessions?\b|\bis\s+anything\b|\brunning\b",
    re.I,
)
_LIST = re.compile(
    r"\b(?:list|show)\b.*\bworkspaces?\b|\b(?:which|what)\s+workspaces\b|\bcatalog\b"
    r"|\bwhat\s+can\s+i\s+(?:open|launch|use)\b|^\s*workspaces\s*\??\s*$",
    re.I,
)
_LAUNCH = re.compile(r"\b(?:open|launch|start|run|boot)\b", re.I)
_FILLER = {
    "a", "all", "an", "and", "can", "could", "for", "me", "my", "now", "of", "please", "session",
    "sessions", "the", "this", "to", "up", "workspace", "you", "it", "down", "would", "i", "want",
}  # fmt: skip
_EVERYTHING = re.compile(r"\b(?:all|everything|every\s+\w+)\b", re.I)
# How much of the question the intent is read from. A request to this assistant is a sentence;
# the inputs may hold 50 x 32,000 characters, and reading (and echoing) all of them would let
# one request hold the event loop for minutes and answer with a quadratically long stream.
INTENT_TEXT_LIMIT = 500

HELP = (
    "I can list the workspaces in the catalog, tell you what is running, search the catalog, "
    "and open or stop a workspace for you. Try “open my Linux desktop” or “what is running?”."
)


@dataclass(frozen=True)
class Intent:
    kind: str  # status | list | search | launch | stop | help
    target: str = ""


def _plain(text: str) -> str:
    """Lower case without accents, so "neogenesys" finds "Neogénesys"."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def _target_after(verb: re.Pattern, text: str) -> str:
    match = verb.search(text)
    rest = text[match.end() :] if match else text
    words = re.findall(r"[\w.-]+", rest)
    return " ".join(word for word in words if word.lower() not in _FILLER).strip(" .-")


def parse_intent(text: str) -> Intent:
    if _STOP.search(text):
        if _EVERYTHING.search(text):
            return Intent("stop", "*")
        return Intent("stop", _target_after(_STOP, text))
    search = _SEARCH.search(text)
    if search:
        return Intent("search", _target_after(re.compile(r"^"), search.group("query")))
    if _STATUS.search(text):
        return Intent("status")
    if _LIST.search(text):
        return Intent("list")
    if _LAUNCH.search(text):
        return Intent("launch", _target_after(_LAUNCH, text))
    return Intent("help")


PLANS = {
    "status": "The user asks what is running. I will list their live sessions with "
    "list_sessions and report each one with its viewer link.",
    "list": "The user wants the catalog. I will call list_workspaces and name each workspace "
    "with its type and whether it is running for them.",
    "search": "The user is looking for {target!r}. I will call search_workspaces with that "
    "query and report the matches.",
    "launch": "The user wants to open {target!r}. I will find it with search_workspaces, launch "
    "the best match with launch_workspace, and give the viewer link.",
    "launch-unnamed": "The user wants to open a workspace but did not say which. I will list "
    "the catalog with list_workspaces and ask which one.",
    "stop": "The user wants to stop {target!r}. I will list their live sessions with "
    "list_sessions, stop the matching one with stop_workspace, and confirm.",
    "stop-all": "The user wants to stop everything. I will list their live sessions with "
    "list_sessions and stop each with stop_workspace.",
    "help": "This is not a workspace request I recognise. I will explain what I can do.",
}


def _score(target: str, *fields: str) -> int:
    haystack = _plain(" ".join(fields))
    words = _plain(target).split()
    return sum(1 for word in words if word in haystack)


def _best(target: str, items: list[dict], fields: tuple[str, ...]) -> list[dict]:
    """The items that match the most words of `target` (several when they tie)."""
    scored = [(_score(target, *(str(item.get(f, "")) for f in fields)), item) for item in items]
    top = max((score for score, _ in scored), default=0)
    if top == 0:
        return []
    exact = [item for _, item in scored if _plain(str(item.get("name", ""))) == _plain(target)]
    return exact or [item for score, item in scored if score == top]


def _hhmm(moment: str | None) -> str:
    return datetime.fromisoformat(moment).strftime("%H:%M") if moment else "?"


def _words(text: str) -> int:
    return len(text.split())


def _word_chunks(text: str) -> Iterator[str]:
    """Small deltas: a word and the space or newline after it."""
    yield from re.findall(r"\S+\s*|\s+", text)


class BuiltinSession(ModelSession):
    provider = NAME
    model = NAME

    def __init__(self, request: ModelRequest):
        question = " ".join(request.inputs)[:INTENT_TEXT_LIMIT]
        self.intent = parse_intent(question)
        self._question_words = _words(question)
        self.timezone = request.timezone
        self._rounds = 0
        self._results: list[tuple[ToolRequest, ToolOutcome]] = []
        self._calls = 0

    def _plan(self) -> str:
        kind, target = self.intent.kind, self.intent.target
        if kind == "launch" and not target:
            kind = "launch-unnamed"
        if kind == "stop" and target == "*":
            kind = "stop-all"
        return PLANS[kind].format(target=target)

    def _call(self, name: str, **arguments) -> ToolRequest:
        self._calls += 1
        return ToolRequest(f"builtin-{self._calls}", name, arguments)

    async def round(self, *, tools_enabled: bool) -> AsyncIterator[ModelEvent]:
        read = self._question_words + sum(
            _words(json.dumps(outcome.response, default=str)) for _, outcome in self._results
        )
        written = 0
        if self._rounds == 0:
            plan = self._plan()
            written += _words(plan)
            for chunk in _word_chunks(plan):
                yield ThinkingChunk(chunk)
        self._rounds += 1
        step = self._next_step() if tools_enabled else None
        if isinstance(step, ToolRequest):
            written += _words(f"{step.name} {json.dumps(step.arguments)}")
            yield UsageReport(input_tokens=read, output_tokens=written)
            yield step
            return
        answer = step or self._answer()
        yield UsageReport(input_tokens=read, output_tokens=written + _words(answer))
        for chunk in _word_chunks(answer):
            yield TextChunk(chunk)
            # Let other turns on this event loop stream too.
            await asyncio.sleep(0)

    def add_tool_results(self, results: list[tuple[ToolRequest, ToolOutcome]]) -> None:
        self._results.extend(results)

    # --- What to do next, given the results so far ------------------------------------------

    def _last(self, name: str) -> ToolOutcome | None:
        for request, outcome in reversed(self._results):
            if request.name == name:
                return outcome
        return None

    def _next_step(self) -> ToolRequest | None:
        kind, target = self.intent.kind, self.intent.target
        done = [request.name for request, _ in self._results]
        if kind == "status" and not done:
            return self._call("list_sessions", status="live")
        if kind == "list" and not done:
            return self._call("list_workspaces")
        if kind == "search" and not done:
            return self._call("search_workspaces", query=target) if target else None
        if kind == "launch":
            return self._next_launch_step(target, done)
        if kind == "stop":
            return self._next_stop_step(target, done)
        return None

    def _launch_candidates(self) -> list[dict]:
        found = self._last("list_workspaces") or self._last("search_workspaces")
        if found is None or not found.success:
            return []
        return _best(self.intent.target, found.response["workspaces"], ("name", "id", "type"))

    def _next_launch_step(self, target: str, done: list[str]) -> ToolRequest | None:
        if not target:
            return None if done else self._call("list_workspaces")
        if not done:
            return self._call("search_workspaces", query=target)
        if done == ["search_workspaces"]:
            found = self._last("search_workspaces")
            if found and found.success and not found.response["workspaces"]:
                # Every word had to match; look again, word by word, over the whole catalog.
                return self._call("list_workspaces")
        if "launch_workspace" in done:
            return None
        candidates = self._launch_candidates()
        if len(candidates) == 1:
            return self._call("launch_workspace", workspace_id=candidates[0]["id"])
        return None

    def _stop_candidates(self) -> list[dict]:
        found = self._last("list_sessions")
        if found is None or not found.success:
            return []
        sessions = [s for s in found.response["sessions"] if s.get("workspace_id")]
        if self.intent.target == "*":
            return sessions
        fields = ("workspace_name", "workspace_id", "workspace_type")
        named = [{**s, "name": s["workspace_name"]} for s in sessions]
        return _best(self.intent.target, named, fields)

    def _next_stop_step(self, target: str, done: list[str]) -> ToolRequest | None:
        if not done:
            return self._call("list_sessions", status="live")
        stopped = {
            request.arguments["workspace_id"]
            for request, _ in self._results
            if request.name == "stop_workspace"
        }
        candidates = self._stop_candidates()
        if target != "*" and len(candidates) > 1:
            return None  # ambiguous: ask which one
        for session in candidates:
            if session["workspace_id"] not in stopped:
                return self._call("stop_workspace", workspace_id=session["workspace_id"])
        return None

    # --- The answer ------------------------------------------------------------------------------

    def _answer(self) -> str:
        kind = self.intent.kind
        if kind in ("status", "list", "search"):
            for _, outcome in self._results:
                if not outcome.success:
                    return f"I could not do that: {outcome.response.get('error')}"
        return getattr(self, f"_answer_{kind}")()

    def _answer_help(self) -> str:
        return HELP

    def _answer_status(self) -> str:
        sessions = self._last("list_sessions").response["sessions"]
        if not sessions:
            return (
                "Nothing is running right now. Ask me to open a workspace, for example "
                "“open my Linux desktop”."
            )
        lines = [
            f"- {s['workspace_name']}: {s['status']} since "
            f"{_hhmm(s['ready_at'] or s['started_at'])} ({self.timezone}), "
            f"open it at {s['stream_url']}"
            for s in sessions
        ]
        noun = "session is" if len(sessions) == 1 else "sessions are"
        return f"{len(sessions)} {noun} running:\n" + "\n".join(lines)

    @staticmethod
    def _workspace_lines(workspaces: list[dict]) -> str:
        return "\n".join(
            f"- {w['name']} ({w['type']}, {w['id']})"
            + (": running" if w.get("running_for_you") else "")
            for w in workspaces
        )

    def _answer_list(self) -> str:
        workspaces = self._last("list_workspaces").response["workspaces"]
        if not workspaces:
            return "The catalog is empty."
        return f"There are {len(workspaces)} workspaces:\n" + self._workspace_lines(workspaces)

    def _answer_search(self) -> str:
        target = self.intent.target
        if not target:
            return "What should I search for? For example “search for browser”."
        workspaces = self._last("search_workspaces").response["workspaces"]
        if not workspaces:
            return f"No workspace matches “{target}”."
        noun = "workspace matches" if len(workspaces) == 1 else "workspaces match"
        return f"{len(workspaces)} {noun} “{target}”:\n" + self._workspace_lines(workspaces)

    def _answer_launch(self) -> str:
        target = self.intent.target
        launched = self._last("launch_workspace")
        if launched is not None:
            if not launched.success:
                name = next((c["name"] for c in self._launch_candidates()), target)
                return f"I could not launch {name}: {launched.response.get('error')}"
            data = launched.response
            name, url = data["workspace"]["name"], data["stream_url"]
            if not data["created"]:
                return f"{name} is already running for you. Open it at {url}"
            return f"I launched {name} ({data['status']}). Open it at {url}"
        catalog = self._last("list_workspaces") or self._last("search_workspaces")
        if catalog is not None and not catalog.success:
            return f"I could not look the workspace up: {catalog.response.get('error')}"
        if not target:
            workspaces = catalog.response["workspaces"] if catalog else []
            return "Which workspace should I open?\n" + self._workspace_lines(workspaces)
        candidates = self._launch_candidates()
        if len(candidates) > 1:
            return f"Several workspaces match “{target}”; which one?\n" + self._workspace_lines(
                candidates
            )
        return f"I could not find a workspace matching “{target}”."

    def _answer_stop(self) -> str:
        listed = self._last("list_sessions")
        if listed is None or not listed.success:
            error = listed.response.get("error") if listed else ""
            return f"I could not check your sessions: {error}"
        sessions = listed.response["sessions"]
        if not sessions:
            return "Nothing is running, so there is nothing to stop."
        stops = [(req, out) for req, out in self._results if req.name == "stop_workspace"]
        if not stops:
            running = ", ".join(s["workspace_name"] for s in sessions)
            target = self.intent.target
            if len(self._stop_candidates()) > 1:
                return f"Several running sessions match “{target}”: {running}. Which one?"
            return f"None of your running sessions matches “{target}”. Running: {running}."
        lines = []
        for request, outcome in stops:
            if outcome.success:
                lines.append(f"I stopped {outcome.response['workspace_name']}.")
            else:
                workspace_id = request.arguments["workspace_id"]
                lines.append(f"I could not stop {workspace_id}: {outcome.response.get('error')}")
        return "\n".join(lines)
