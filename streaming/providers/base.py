"""The one interface every provider implements, and the model-side events it yields.

The engine drives the loop: it asks a ModelSession for one round of model output, runs the tools
that round requested, hands the results back with `add_tool_results`, and asks for the next round
until a round requests no tool. Providers only speak to their model.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class ToolSpec:
    name: str
    description: str
    parameters: dict[str, Any]  # JSON Schema of the arguments object


@dataclass(frozen=True, slots=True)
class ModelRequest:
    """Everything a provider needs to answer one turn."""

    model: str
    system: str
    inputs: list[str]
    tools: list[ToolSpec]
    # Earlier (question, answer) pairs of the same conversation, oldest first.
    context: list[tuple[str, str]] = field(default_factory=list)
    thinking_budget_tokens: int = 0
    timezone: str = "UTC"


@dataclass(frozen=True, slots=True)
class ThinkingChunk:
    text: str


@dataclass(frozen=True, slots=True)
class ThinkingSigned:
    """The model closed a thinking block; Anthropic signs it so it can be passed back."""

    signature: str


@dataclass(frozen=True, slots=True)
class TextChunk:
    text: str


@dataclass(frozen=True, slots=True)
class ToolRequest:
    call_id: str
    name: str
    arguments: dict[str, Any]
    # Set when the model's arguments were not a JSON object; the tool is then not run.
    invalid_arguments: str | None = None


@dataclass(frozen=True, slots=True)
class UsageReport:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0


ModelEvent = ThinkingChunk | ThinkingSigned | TextChunk | ToolRequest | UsageReport


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    response: Any  # JSON-serialisable
    success: bool


class ProviderError(Exception):
    """The model could not answer; `status` is what the client is told (429, 502, ...), and
    with a 429 `retry_after` how many seconds to wait."""

    def __init__(self, message: str, status: int = 502, retry_after: int | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.retry_after = retry_after


class ModelSession:
    """One turn's conversation with a model."""

    provider: str = ""
    model: str = ""

    def round(self, *, tools_enabled: bool) -> AsyncIterator[ModelEvent]:
        """Stream one model response. Tool requests come out as ToolRequest events."""
        raise NotImplementedError

    def add_tool_results(self, results: list[tuple[ToolRequest, ToolOutcome]]) -> None:
        """Append the round's tool results to the transcript for the next round."""
        raise NotImplementedError

    async def aclose(self) -> None:
        """Release connections; called once, however the turn ended."""
