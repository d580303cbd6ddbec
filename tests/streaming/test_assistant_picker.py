"""The assistants a person may pick on the assistant page are exactly those a turn accepts."""

from __future__ import annotations

import pytest

from streaming.models import Assistant, Institution, Membership
from streaming.selectors import assistant_usable, assistants_usable

pytestmark = pytest.mark.django_db


def test_the_picker_offers_exactly_the_assistants_a_turn_would_accept(user, other_user):
    mine = Institution.objects.create(name="Mine")
    theirs = Institution.objects.create(name="Theirs")
    Membership.objects.create(user=user, institution=mine)
    Membership.objects.create(user=other_user, institution=mine)  # a second member: no doubles
    Membership.objects.create(user=other_user, institution=theirs)
    made = {
        name: Assistant.objects.create(name=name, provider="builtin", **fields)
        for name, fields in {
            "everyone": {},
            "my institution": {"institution": mine},
            "their institution": {"institution": theirs},
            "my draft": {"status": Assistant.Status.UNPUBLISHED, "owner": user},
            "their draft": {"status": Assistant.Status.UNPUBLISHED, "owner": other_user},
            "retired": {"status": Assistant.Status.INACTIVE},
        }.items()
    }

    offered = [assistant.name for assistant in assistants_usable(user)]

    accepted = sorted(
        name
        for name, assistant in made.items()
        if assistant_usable(user, assistant.pk, institution=None) is not None
    )
    assert offered == accepted == ["everyone", "my draft", "my institution"]
