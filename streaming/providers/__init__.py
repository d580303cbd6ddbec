"""Providers behind one interface (base.ModelSession): builtin, openai, anthropic."""

from __future__ import annotations

from streaming.providers.anthropic import AnthropicSession
from streaming.providers.base import ModelRequest, ModelSession
from streaming.providers.builtin import BuiltinSession
from streaming.providers.openai import OpenAISession

PROVIDERS: dict[str, type[ModelSession]] = {
    "builtin": BuiltinSession,
    "openai": OpenAISession,
    "anthropic": AnthropicSession,
}


def open_session(provider: str, request: ModelRequest) -> ModelSession:
    return PROVIDERS[provider](request)
