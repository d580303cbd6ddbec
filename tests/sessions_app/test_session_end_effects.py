"""After an end commits, the session's relay connections hear about it through the channel layer
(Redis, so from any process) and the provisioner is asked to stop the desktop."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer

from sessions_app import services
from sessions_app.models import WorkspaceSession, session_group
from tests.support.sessions import launch


@pytest.fixture
def stopped_desktops(monkeypatch):
    """Record which sessions the provisioner was asked to stop (the static one does nothing)."""
    stopped = []
    real = services.provisioner_named

    class Recording:
        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def stop(self, session):
            stopped.append(session.pk)
            return self.inner.stop(session)

    monkeypatch.setattr(services, "provisioner_named", lambda name: Recording(real(name)))
    return stopped


def ended_message_after(group: str, action) -> dict:
    async def listen():
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(group, channel)
        try:
            await sync_to_async(action)()
            return await asyncio.wait_for(layer.receive(channel), timeout=10)
        finally:
            await layer.group_discard(group, channel)

    return async_to_sync(listen)()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("end", "reason"),
    [
        (lambda api, ws, sid: api.post(f"/api/workspaces/{ws}/stop"), "user_stop"),
        (lambda api, ws, sid: api.post(f"/api/sessions/{sid}/terminate"), "terminated"),
    ],
    ids=["stop", "terminate"],
)
def test_ending_a_session_tells_its_relays_and_stops_its_desktop(
    api, web_workspace, stopped_desktops, end, reason
):
    session_id = launch(api, web_workspace.id).json()["session_id"]

    message = ended_message_after(
        session_group(session_id), lambda: end(api, web_workspace.id, session_id)
    )

    assert message == {"type": "session.ended", "reason": reason, "session_id": session_id}
    assert [str(pk) for pk in stopped_desktops] == [session_id]
    assert WorkspaceSession.objects.get(pk=session_id).status == "terminated"


@pytest.mark.django_db(transaction=True)
def test_nothing_is_sent_or_stopped_when_the_end_rolls_back(api, web_workspace, stopped_desktops):
    from django.db import transaction

    from core.network import SYSTEM

    session_id = launch(api, web_workspace.id).json()["session_id"]
    session = WorkspaceSession.objects.get(pk=session_id)

    with pytest.raises(RuntimeError), transaction.atomic():
        services.session_terminate(session=session, actor=None, reason="x", origin=SYSTEM)
        raise RuntimeError("roll back")

    assert stopped_desktops == []
    assert WorkspaceSession.objects.get(pk=session_id).status == "ready"
