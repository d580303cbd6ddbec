"""The identity assertion a web app behind the gateway receives with every request
(`X-Workgate-Assertion`): a JWT signed with the gateway's app signing key (app_proxy/keys.py),
naming the user (`sub`, `email`, `groups`) for one workspace (`aud`), valid for a minute. An
app checks it against the keys at `/.well-known/workgate-jwks.json`, which is how it knows the
request came through Workgate and for whom; no header an app receives is to be believed
without it."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

import jwt
from django.conf import settings
from django.utils import timezone

from app_proxy.keys import signing_key

HEADER = "X-Workgate-Assertion"
LIFETIME = timedelta(seconds=60)
ISSUER = "workgate"


class NoSigningKey(Exception):
    """No WORKGATE_APP_SIGNING_KEY: nothing can be asserted to an app."""


def assertion_for(user, *, workspace_id: str, now: datetime | None = None) -> str:
    key = signing_key()
    if key is None:
        raise NoSigningKey("WORKGATE_APP_SIGNING_KEY is not set")
    now = now or timezone.now()
    claims = {
        "iss": settings.WORKGATE_APPS_DOMAIN or ISSUER,
        "sub": str(user.pk),
        "email": user.email,
        "groups": sorted(user.groups.values_list("name", flat=True)),
        "aud": workspace_id,
        "iat": int(now.timestamp()),
        "nbf": int(now.timestamp()),
        "exp": int((now + LIFETIME).timestamp()),
        "jti": secrets.token_urlsafe(12),
    }
    return jwt.encode(claims, key.private, algorithm=key.algorithm, headers={"kid": key.kid})
