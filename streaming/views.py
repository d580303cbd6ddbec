"""The assistant page: the conversation list and past turns, rendered; new turns stream in JS."""

from __future__ import annotations

import json

from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from core.parsers import json_loads
from core.queries import queryable
from streaming.models import Conversation, History
from streaming.selectors import assistants_usable

CONVERSATIONS_SHOWN = 50
TURNS_SHOWN = 100


def _pretty(value) -> str:
    if isinstance(value, str):
        try:
            value = json_loads(value)
        except ValueError:
            return value
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _turn(history: History) -> dict:
    return {
        "status": history.status,
        "inputs": history.inputs,
        "thinking": history.thinking,
        "tool_calls": [
            {
                **call,
                "arguments_json": _pretty(call.get("arguments", {})),
                "response_json": _pretty(call.get("response", "")),
            }
            for call in history.tool_calls
        ],
        "completion": history.completion,
        "error_message": history.error_message,
        "created_at": history.created_at,
        "model": history.model,
    }


@login_required
def assistant(request):
    conversations = Conversation.objects.filter(user=request.user).order_by("-updated_at")
    course_id = request.GET.get("course", "")
    current = None
    if course_id and queryable(course_id):
        current = conversations.filter(course_id=course_id).first()
    turns = []
    if current is not None:
        recent = History.objects.filter(user=request.user, conversation=current).order_by(
            "-created_at", "-id"
        )[:TURNS_SHOWN]
        turns = [_turn(history) for history in reversed(recent)]
    assistants = list(assistants_usable(request.user))
    chosen = current.assistant_id if current is not None else None
    return render(
        request,
        "streaming/assistant.html",
        {
            "conversations": conversations[:CONVERSATIONS_SHOWN],
            "current": current,
            "turns": turns,
            "assistants": assistants,
            "chosen_assistant": chosen if any(a.pk == chosen for a in assistants) else None,
        },
    )
