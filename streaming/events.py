"""What a turn yields: typed events that every transport translates to its own wire shape.

The SSE view (streaming/sse.py) writes them as `data: {"type": "stream", ...}` lines; a Socket.IO
transport emits the same events as RECEIVE_STREAM payloads. No transport knows a provider.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class DisplayInfo:
    icon: str
    label: str


@dataclass(frozen=True, slots=True)
class Connected:
    message: str = "Stream connected"


@dataclass(frozen=True, slots=True)
class TextDelta:
    delta: str
    prompt: str  # the answer so far, this delta included


@dataclass(frozen=True, slots=True)
class ThinkingDelta:
    round: int
    delta: str

    @property
    def id(self) -> str:
        return f"round-{self.round}"


@dataclass(frozen=True, slots=True)
class ThinkingDone:
    """A thinking round closed: the authoritative full text and, from Anthropic, a signature."""

    round: int
    text: str
    signature: str | None = None

    @property
    def id(self) -> str:
        return f"round-{self.round}"


@dataclass(frozen=True, slots=True)
class ToolCall:
    call_id: str
    name: str
    arguments: dict[str, Any]
    display: DisplayInfo


@dataclass(frozen=True, slots=True)
class ToolProgress:
    """A tool is still running; sent every keep-alive interval while it does."""

    call_id: str
    name: str
    display: DisplayInfo
    progress: float | None = None


@dataclass(frozen=True, slots=True)
class KeepAlive:
    """Nothing to show, but the connection must not look idle (a hidden tool is running)."""


@dataclass(frozen=True, slots=True)
class ToolResult:
    call_id: str
    name: str
    response: Any
    success: bool
    duration_ms: int


@dataclass(frozen=True, slots=True)
class Complete:
    outputs: list[str]
    completion: str
    usage: dict[str, int]
    model: str
    cached: bool
    history_id: int | None
    duration_ms: int


@dataclass(frozen=True, slots=True)
class Error:
    message: str
    status: int
    history_id: int | None = None
    retry_after: int | None = None  # seconds, with a 429


@dataclass(frozen=True, slots=True)
class Done:
    pass


Event = (
    Connected
    | TextDelta
    | ThinkingDelta
    | ThinkingDone
    | ToolCall
    | ToolProgress
    | KeepAlive
    | ToolResult
    | Complete
    | Error
    | Done
)


@dataclass
class Usage:
    """Token counts summed over a turn's model calls."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0

    def add(self, *, input_tokens: int = 0, output_tokens: int = 0, cached: int = 0) -> None:
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens
        self.cached_input_tokens += cached

    def as_dict(self) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.input_tokens + self.output_tokens,
            "cached_input_tokens": self.cached_input_tokens,
        }
