"""CompiledQuery: a queryset compiled to SQL once, run with each call's own values."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from accounts.models import User
from core.queries import CompiledQuery

pytestmark = pytest.mark.django_db


def test_each_call_runs_the_same_statement_with_its_own_values(user, other_user):
    by_address = CompiledQuery(
        lambda email, but: User.objects.filter(email=email, is_active=True).exclude(pk=but),
        email="\x00stand-in",
        but=-7_000_000_001,
    )

    assert [u.pk for u in by_address(email=user.email, but=0)] == [user.pk]
    assert [u.pk for u in by_address(email=other_user.email, but=0)] == [other_user.pk]
    assert list(by_address(email=user.email, but=user.pk)) == []
    found = next(iter(by_address(email=user.email, but=0)))
    assert (found.email, found.is_active, found.date_joined) == (
        user.email,
        True,
        user.date_joined,
    )


def test_a_stand_in_that_never_reaches_the_statement_is_refused():
    query = CompiledQuery(lambda email: User.objects.filter(is_active=True), email="\x00stand-in")

    with pytest.raises(ImproperlyConfigured):
        query(email="alice@example.com")


def test_values_a_backend_stores_as_text_reach_the_statement_as_it_stores_them(user):
    """SQLite has no UUID or timestamp type: a field hands it hex and text, which the compiled
    statement must be given too (PostgreSQL takes both as they are)."""
    import uuid
    from datetime import UTC, datetime, timedelta

    from django.contrib.auth.models import Group

    from sessions_app.models import WorkspaceSession

    group = Group.objects.create(name="readers")
    user.groups.add(group)
    joined_since = CompiledQuery(
        lambda since, but: User.objects.filter(date_joined__gte=since).exclude(
            profile__user_id__in=WorkspaceSession.objects.filter(pk=but).values("user_id")
        ),
        since=datetime(1901, 2, 3, 4, 5, 6, 789012, tzinfo=UTC),
        but=uuid.UUID(int=7),
    )

    before, after = user.date_joined - timedelta(seconds=1), user.date_joined + timedelta(days=1)
    assert [u.pk for u in joined_since(since=before, but=uuid.uuid4())] == [user.pk]
    assert list(joined_since(since=after, but=uuid.uuid4())) == []


def test_a_stand_in_that_also_reaches_the_statement_transformed_is_refused():
    """A value used twice, once as itself and once as a LIKE pattern made from it, would keep
    the stand-in in the pattern for every call: refused when compiled, not answered wrongly."""
    query = CompiledQuery(
        lambda email: (
            User.objects.filter(email=email) | User.objects.filter(first_name__contains=email)
        ),
        email="\x00stand-in",
    )

    with pytest.raises(ImproperlyConfigured):
        query(email="alice@example.com")
