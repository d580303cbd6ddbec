"""What Daphne's access log may show of a request's query string: its names, never a value
(tickets, Socket.IO session ids, and whatever an app behind the gateway carries in its queries)."""

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
            "/socket.io/?EIO=[redacted]&transport=[redacted]&sid=[redacted]&t=[redacted]",
        ),
        ("/socket.io/?EIO=4&SID=abc", "/socket.io/?EIO=[redacted]&SID=[redacted]"),
        (
            "/callback?code=oauth-code-5f0c&access_token=at-1#frag",
            "/callback?code=[redacted]&access_token=[redacted]",
        ),
        ("/api/workspaces?page=2", "/api/workspaces?page=[redacted]"),
        ("/download?secret-token&x=1", "/download?[redacted]&x=[redacted]"),
        ("/api/workspaces", "/api/workspaces"),
    ],
)
def test_no_query_value_reaches_the_access_log(path, shown):
    assert redact_credentials(path) == shown
