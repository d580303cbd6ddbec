"""What Daphne's access log may show of a request's query string."""

from __future__ import annotations

import pytest

from vnc_proxy.access_log import redact_credentials


@pytest.mark.parametrize(
    ("path", "shown"),
    [
        (
            "/api/agents/workspace/vnc/wg-1?ticket=eyJhbGciOi.abc.def",
            "/api/agents/workspace/vnc/wg-1?ticket=[redacted]",
        ),
        (
            "/socket.io/?EIO=4&transport=polling&sid=Zx9-secret_sid&t=P1",
            "/socket.io/?EIO=4&transport=polling&sid=[redacted]&t=P1",
        ),
        ("/socket.io/?EIO=4&SID=abc", "/socket.io/?EIO=4&SID=[redacted]"),
        ("/api/workspaces?page=2", "/api/workspaces?page=2"),
        ("/api/audit-logs?consid=1", "/api/audit-logs?consid=1"),
    ],
)
def test_tickets_and_socket_ids_never_reach_the_access_log(path, shown):
    assert redact_credentials(path) == shown
