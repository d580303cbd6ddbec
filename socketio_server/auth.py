"""Who is on a socket: the access token from CONNECT's auth payload or a `register` event.

The REST API's own authentication class does the checking (signature, expiry, token type
`access`, an existing active user, the password and sign-in epoch it was issued under), so a
token is valid here exactly when it is valid there.
"""

from __future__ import annotations

from rest_framework.exceptions import AuthenticationFailed
from rest_framework_simplejwt.exceptions import InvalidToken, TokenError

from accounts.authentication import AccessTokenAuthentication
from core.database import in_db_thread

# Messages for the client, not secrets.
MISSING_TOKEN = "Authentication token missing"  # noqa: S105
INVALID_TOKEN = "Invalid or expired token"  # noqa: S105


class TokenRejected(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def _user_for_token(token: object):
    if not isinstance(token, str) or not token.strip():
        raise TokenRejected(MISSING_TOKEN)
    authentication = AccessTokenAuthentication()
    try:
        validated = authentication.get_validated_token(token.strip().encode("utf-8"))
        return authentication.get_user(validated)
    except (InvalidToken, TokenError, AuthenticationFailed, UnicodeEncodeError) as exc:
        # UnicodeEncodeError: JSON can carry a lone surrogate ("\ud800"), which no token has.
        # One message for every failure: a client learns nothing about which check failed.
        raise TokenRejected(INVALID_TOKEN) from exc


async def user_for_token(token: object):
    """The active user the access token names; TokenRejected with a client-facing message."""
    if not isinstance(token, str) or not token.strip():
        raise TokenRejected(MISSING_TOKEN)
    return await in_db_thread(_user_for_token)(token)
