"""Starting a turn: who may ask what, with which assistant, in which conversation."""

from __future__ import annotations

import uuid
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from rest_framework.exceptions import ValidationError

from core.exceptions import Forbidden
from core.network import Origin
from streaming.engine import TurnRequest
from streaming.models import Assistant, Conversation, Institution
from streaming.selectors import assistant_usable, conversation_context, institution_of_member

WORKGATE_INSTRUCTIONS = (
    "You are Workgate's assistant. You help people find, launch and stop their workspaces "
    "(remote desktops, web applications, isolated browsers) and tell them what is running. "
    "Use the tools for every fact about workspaces and sessions and for every action; never "
    "invent a workspace id, a session or a link. You act for the person asking, on their own "
    "sessions only. When a tool refuses, say why in plain words. Keep answers short."
)


def _invalid(field: str, message: str) -> ValidationError:
    return ValidationError({"requestArgs": {field: [message]}})


def _system_prompt(assistant: Assistant | None, tz: str) -> str:
    now = timezone.localtime(timezone.now(), ZoneInfo(tz))
    parts = [
        WORKGATE_INSTRUCTIONS,
        f"The user's time zone is {tz}; it is now {now:%A %Y-%m-%d %H:%M} there.",
    ]
    if assistant is not None and assistant.instructions.strip():
        parts.append(assistant.instructions.strip())
    return "\n\n".join(parts)


def conversation_ensure(
    *,
    user,
    course_id: str,
    course_name: str,
    institution: Institution | None,
    assistant: Assistant | None,
    forget_assistant: bool = False,
) -> Conversation:
    """The user's conversation `course_id`, created on first use; a new name is kept, a named
    assistant remembered, and with `forget_assistant` the remembered one dropped."""
    with transaction.atomic():
        conversation, created = Conversation.objects.select_for_update().get_or_create(
            user=user,
            course_id=course_id,
            defaults={
                "course_name": course_name,
                "institution": institution,
                "assistant": assistant,
            },
        )
        if not created:
            changed = []
            if course_name and course_name != conversation.course_name:
                conversation.course_name = course_name
                changed.append("course_name")
            if assistant is not None and conversation.assistant_id != assistant.pk:
                conversation.assistant = assistant
                changed.append("assistant")
            elif forget_assistant and conversation.assistant_id is not None:
                conversation.assistant = None
                changed.append("assistant")
            conversation.save(update_fields=[*changed, "updated_at"])
        return conversation


def turn_prepare(
    *,
    user,
    inputs: list[str],
    origin: Origin,
    mfa_verified: bool,
    institution_public_id: uuid.UUID | None = None,
    assistant_id: uuid.UUID | None = None,
    default_assistant: bool = False,
    course_id: str | None = None,
    course_name: str = "",
    rag_only: bool = False,
    timezone_name: str | None = None,
) -> TurnRequest:
    """Check the request against the caller's memberships and build the turn to run.

    403 when the caller is not a member of the named institution (existing or not); 400 when
    the assistant does not exist or is not theirs to use.
    `default_assistant` (the request said `assistantId: null`): answer with the default
    assistant and let the conversation forget the one it remembered.
    """
    institution = None
    if institution_public_id is not None:
        institution = institution_of_member(user, institution_public_id)
        if institution is None:
            raise Forbidden("You are not a member of this institution.", "not_a_member")

    assistant = None
    if assistant_id is not None:
        assistant = assistant_usable(user, assistant_id, institution=institution)
        if assistant is None:
            raise _invalid("assistantId", "No assistant with this id is available to you.")

    conversation = None
    if course_id:
        conversation = conversation_ensure(
            user=user,
            course_id=course_id,
            course_name=course_name,
            institution=institution,
            assistant=assistant,
            forget_assistant=default_assistant,
        )
        if assistant is None and conversation.assistant_id is not None:
            # The course remembers its assistant, if the caller may still use it here.
            assistant = assistant_usable(user, conversation.assistant_id, institution=institution)

    if institution is None and assistant is not None and assistant.institution_id:
        institution = assistant.institution

    tz = timezone_name or "UTC"
    if assistant is not None:
        provider, model = assistant.provider, assistant.model
        budget = assistant.thinking_budget_tokens
    else:
        provider, model, budget = settings.WORKGATE_AI_PROVIDER, settings.WORKGATE_AI_MODEL, 0
    return TurnRequest(
        user=user,
        inputs=list(inputs),
        provider=provider,
        model=model,
        system=_system_prompt(assistant, tz),
        origin=origin,
        mfa_verified=mfa_verified,
        timezone=tz,
        show_thinking=institution.display_thinking_details if institution else True,
        show_tools=institution.display_tool_execution if institution else True,
        rag_only=rag_only,
        thinking_budget_tokens=budget,
        context=conversation_context(conversation),
        institution_id=institution.pk if institution else None,
        conversation_id=conversation.pk if conversation else None,
        assistant_id=assistant.pk if assistant else None,
    )
