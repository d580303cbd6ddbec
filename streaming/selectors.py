"""Reading the assistant's data: memberships, usable assistants, histories and courses."""

from __future__ import annotations

import uuid
from datetime import datetime

from django.db.models import Count, Max, Q, QuerySet

from config.exceptions import NotFound
from streaming.models import Assistant, Conversation, History, Institution

HISTORY_LIMIT_DEFAULT = 50
HISTORY_LIMIT_MAX = 200
CONTEXT_TURNS = 10


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
        .values_list("prompt", "completion")[:CONTEXT_TURNS]
    )
    return list(reversed(list(turns)))


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
        histories = histories.filter(Q(prompt__icontains=search) | Q(completion__icontains=search))
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
