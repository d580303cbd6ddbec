"""A relay URL whose query string cannot be parsed is refused like a missing ticket, not a crash."""

from __future__ import annotations

import pytest

from tests.vnc_proxy.conftest import db, refused_with, relay_communicator

pytestmark = [pytest.mark.django_db(transaction=True)]


async def test_a_query_with_too_many_fields_is_refused_with_4401(make_runtime, user):
    runtime = await db(make_runtime)(user)
    padding = "&".join(f"x{n}=1" for n in range(30))
    communicator = relay_communicator(
        f"/api/agents/workspace/vnc/{runtime.runtime_id}?{padding}&ticket=whatever"
    )

    code, reason = await refused_with(communicator)

    assert (code, reason) == (4401, "missing ticket")
