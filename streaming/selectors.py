"""Reading the assistant's data: memberships, usable assistants, histories and courses."""

from __future__ import annotations

import json
import uuid
from datetime import datetime

from django.db import connection
from django.db.models import Count, Max, Q, QuerySet, TextField, Value
from django.db.models.functions import Cast, Length

from core.exceptions import NotFound
from streaming.models import Assistant, Conversation, History, Institution

HISTORY_LIMIT_DEFAULT = 50
HISTORY_LIMIT_MAX = 200
CONTEXT_TURNS = 10
# What a listed turn holds besides its long text (ids, dates, names of up to 200 characters).
HISTORY_ITEM_OVERHEAD = 2048


def institution_of_member(user, public_id: uuid.UUID) -> Institution | None:
    """The institution `public_id` if `user` is a member of it (else None, existing or not)."""
    return Institution.objects.filter(public_id=public_id, memberships__user=user).first()


def is_member(user, institution_id: int) -> bool:
    return Institution.objects.filter(pk=institution_id, memberships__user=user).exists()


def assistant_usable(user, assistant_id, *, institution: Institution | None) -> Assistant | None:
    """The assistant if `user` may talk to it in `institution`'s context, else None.

    Active assistants are usable by everyone they are shared with (all users, or the members of
    their institution); unpublished ones only by their owner; inactive ones by nobody.
    """
    assistant = Assistant.objects.filter(pk=assistant_id).select_related("institution").first()
    if assistant is None or assistant.status == Assistant.Status.INACTIVE:
        return None
    if assistant.status == Assistant.Status.UNPUBLISHED and assistant.owner_id != user.pk:
        return None
    if assistant.institution_id is not None:
        if institution is not None and institution.pk != assistant.institution_id:
            return None
        if not is_member(user, assistant.institution_id):
            return None
    return assistant


def assistants_usable(user) -> QuerySet[Assistant]:
    """Every assistant `user` may pick (for the page's picker), by name: the same rules as
    `assistant_usable` with no institution named. The turn itself is checked by that function."""
    shared = Q(status=Assistant.Status.ACTIVE) | Q(
        status=Assistant.Status.UNPUBLISHED, owner_id=user.pk
    )
    reachable = Q(institution__isnull=True) | Q(institution__memberships__user=user)
    return (
        Assistant.objects.filter(shared & reachable)
        .select_related("institution")
        .distinct()
        .order_by("name", "id")
    )


def conversation_context(conversation: Conversation | None) -> list[tuple[str, str]]:
    """The conversation's last complete turns as (question, answer) pairs, oldest first."""
    if conversation is None:
        return []
    turns = (
        History.objects.filter(conversation=conversation, status=History.Status.COMPLETE)
        .exclude(completion="")
        .order_by("-created_at", "-id")
        .values_list("inputs", "completion")[:CONTEXT_TURNS]
    )
    return [("\n".join(inputs), completion) for inputs, completion in reversed(list(turns))]


def _as_in_json(text: str) -> str:
    """`text` as it reads inside a string of a JSON column's text, so that a search finds it in
    `inputs` as it would in plain text: PostgreSQL writes jsonb's text with anything but ASCII
    as it is, SQLite keeps what Django wrote (json.dumps, ASCII only)."""
    return json.dumps(text, ensure_ascii=connection.vendor != "postgresql")[1:-1]


def _history_filter(
    histories: QuerySet[History],
    *,
    course_id: str | None = None,
    before: datetime | None = None,
    after: datetime | None = None,
    search: str | None = None,
    limit: int | None = None,
) -> QuerySet[History]:
    if course_id:
        histories = histories.filter(conversation__course_id=course_id)
    if before is not None:
        histories = histories.filter(created_at__lt=before)
    if after is not None:
        histories = histories.filter(created_at__gt=after)
    if search:
        histories = histories.filter(
            Q(inputs__icontains=_as_in_json(search)) | Q(completion__icontains=search)
        )
    limit = min(limit or HISTORY_LIMIT_DEFAULT, HISTORY_LIMIT_MAX)
    return histories.order_by("-created_at", "-id")[:limit]


def _histories() -> QuerySet[History]:
    return History.objects.select_related("conversation", "assistant", "institution", "user")


def history_list(*, user, **filters) -> QuerySet[History]:
    """The caller's own turns, newest first."""
    return _history_filter(_histories().filter(user=user), **filters)


def history_list_all(
    *, user_id: int | None = None, status: str | None = None, **filters
) -> QuerySet[History]:
    """Everyone's turns, for administrators."""
    histories = _histories()
    if user_id is not None:
        histories = histories.filter(user_id=user_id)
    if status:
        histories = histories.filter(status=status)
    return _history_filter(histories, **filters)


def history_within(
    histories: QuerySet[History], *, max_bytes: int
) -> tuple[QuerySet[History], bool]:
    """The first of `histories` (ordered, limited) whose text fits in about `max_bytes`, at
    least one, and whether any were left out.

    The sizes are measured in the database, so turns past the budget are never fetched; they
    count characters, not the bytes of the rendered answer, which the caller measures exactly.
    """
    size = Value(HISTORY_ITEM_OVERHEAD) + 2 * Length("completion") + Length("error_message")
    for field in ("inputs", "thinking", "tool_calls"):
        size += Length(Cast(field, TextField()))
    sizes = list(histories.values_list("pk", size))
    chosen, used = [], 0
    for pk, turn_size in sizes:
        if chosen and used + turn_size > max_bytes:
            break
        chosen.append(pk)
        used += turn_size
    listed = _histories().filter(pk__in=chosen).order_by("-created_at", "-id")
    return listed, len(chosen) < len(sizes)


def history_get(*, user, history_id: int) -> History:
    """One of the caller's own turns; someone else's is the same 404 as a missing one."""
    history = _histories().filter(user=user, pk=history_id).first()
    if history is None:
        raise NotFound("History not found", "not_found")
    return history


def course_list(*, user) -> QuerySet[Conversation]:
    """The caller's conversations with their number of turns and the date of the last one."""
    return (
        Conversation.objects.filter(user=user)
        .select_related("assistant")
        .annotate(history_count=Count("turns"), last_dialogue_date=Max("turns__created_at"))
        .order_by("-updated_at", "-id")
    )
