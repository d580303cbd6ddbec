"""A WebSocket desktop (KasmVNC and the like) that answers the relay with a redirect is refused:
the relay never follows it, so the session's Basic credentials and the user's screen never go
to an address the admin did not configure."""

from __future__ import annotations

import pytest

from audit.models import AuditEntry
from sessions_app.models import WorkspaceSession
from tests.vnc_proxy.conftest import db, refused_with, relay_communicator, relay_path

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_a_redirecting_websocket_desktop_is_refused_and_the_target_never_contacted(
    http_recorder, make_runtime, ticket_for, user, status
):
    elsewhere = http_recorder(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", tls=True)
    elsewhere_url = f"wss://127.0.0.1:{elsewhere.port}/steal"
    desktop = http_recorder(
        f"HTTP/1.1 {status} Moved\r\nLocation: {elsewhere_url}\r\n"
        "Content-Length: 0\r\nConnection: close\r\n\r\n".encode(),
        tls=True,
    )
    runtime = await db(make_runtime)(
        user,
        upstream_kind=WorkspaceSession.UpstreamKind.WEBSOCKET,
        upstream_target=f"wss://127.0.0.1:{desktop.port}/websockify",
        upstream_username="viewer",
        upstream_secret="s3cret",
        upstream_tls_verify=False,  # the recorder's certificate is self-signed
    )
    body = await db(ticket_for)(user, runtime.runtime_id)

    code, reason = await refused_with(relay_communicator(relay_path(body)))

    assert (code, reason) == (1011, "The desktop could not be reached")
    assert len(desktop.requests) == 1
    assert b"authorization: basic" in desktop.requests[0].lower()  # the configured desktop only
    assert elsewhere.requests == []
    failure = await db(AuditEntry.objects.filter(action="vnc_connect").latest)("id")
    assert (failure.success, failure.details["error"]) == (False, reason)
