"""Attachment counts that are not plain ASCII digits get the same clean close as other garbage."""

from __future__ import annotations

import pytest

from tests.socketio_server.support import close_code_after

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ODD_COUNTS = [
    '45\u00b2-["upload"]',  # a superscript two: str.isdigit() says yes, int() says no
    "45" + "1" * 5000 + '-["upload"]',  # longer than int() converts from a string
]


@pytest.mark.parametrize("packet", ODD_COUNTS)
async def test_an_odd_attachment_count_in_a_poll_is_a_400_not_a_500(server, polling, packet):
    await polling.open(server)
    await polling.post(server, "40")
    await polling.packets(server)

    refused = await polling.post(server, packet)

    assert (refused.status_code, refused.json()) == (400, {"code": 3, "message": "Bad request"})


@pytest.mark.parametrize("packet", ODD_COUNTS)
async def test_an_odd_attachment_count_in_a_frame_closes_with_4400(server, packet):
    assert await close_code_after(server, packet) == 4400


async def test_a_token_with_a_lone_surrogate_is_an_invalid_token_not_a_500(server, polling):
    await polling.open(server)

    answered = await polling.post(server, '40{"token":"\\ud800"}')
    refused = await polling.packets(server)

    assert answered.status_code == 200
    assert refused == ['44{"message":"Invalid or expired token"}']


async def test_registering_with_a_lone_surrogate_token_is_refused_not_a_500(server, polling):
    await polling.open(server)
    await polling.post(server, "40")
    await polling.packets(server)

    answered = await polling.post(server, '42["register",{"token":"\\ud800"}]')
    refused = await polling.packets(server)

    assert answered.status_code == 200
    assert refused == ['44{"message":"Invalid or expired token"}']
