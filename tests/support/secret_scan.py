"""The suite-wide check that no stored secret ever appears in a JSON response.

After every response a test client receives, the secrets currently stored in the database (TOTP
seeds, desktop passwords, upstream credentials, web apps' credentials) are read back decrypted
and looked for in the body. Two routes exist to hand one kind of secret to its owner, and only
they are exempt for that kind: enrolment shows the new TOTP secret, and a desktop ticket carries
the RFB password.
"""

from __future__ import annotations

import json

from tests.support.contract import requested

MIN_LENGTH = 6  # shorter values would match ordinary words; real secrets are longer
EXEMPT_PATHS = {
    "TOTP secret": {"/api/auth/mfa/setup"},
    "RFB password": {"/api/agents/workspace/ticket"},
    "VNC secret": set(),
    "app credential": set(),  # sent to the app by the proxy only, never to anyone
}


def stored_secrets() -> dict[str, set[str]]:
    from accounts.models import Profile
    from sessions_app.models import WorkspaceSession
    from workspaces.models import Workspace

    def values(queryset, *fields) -> set[str]:
        return {value for row in queryset.values_list(*fields) for value in row if value}

    return {
        "TOTP secret": values(Profile.objects.exclude(totp_secret=""), "totp_secret"),
        "RFB password": values(Workspace.objects.all(), "rfb_password")
        | values(WorkspaceSession.objects.exclude(rfb_password=""), "rfb_password"),
        "VNC secret": values(Workspace.objects.all(), "vnc_secret")
        | values(WorkspaceSession.objects.exclude(upstream_secret=""), "upstream_secret"),
        "app credential": values(Workspace.objects.exclude(app_credential=""), "app_credential"),
    }


def assert_no_stored_secret(response) -> None:
    if getattr(response, "streaming", False):
        return
    if not response.get("Content-Type", "").startswith("application/json"):
        return
    try:
        secrets = stored_secrets()
    except RuntimeError:
        return  # a test without database access cannot have stored any secret
    body = response.content.decode("utf-8", "replace")
    _method, path = requested(response)
    for kind, found in secrets.items():
        if path in EXEMPT_PATHS[kind]:
            continue
        for value in found:
            if len(value) < MIN_LENGTH:
                continue
            escaped = json.dumps(value)[1:-1]
            assert value not in body and escaped not in body, (
                f"a stored {kind} appeared in the JSON response to {path}"
            )
