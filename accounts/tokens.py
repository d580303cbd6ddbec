"""Access and refresh tokens (simplejwt, HS256) carrying the `mfa` claim."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken, Token
from rest_framework_simplejwt.utils import get_md5_hash_password

# The account's sign_in_epoch when the token was issued (absent, as on tokens issued before
# sign-out everywhere existed, counts as 0).
EPOCH_CLAIM = "epoch"


def new_access_token(user, *, mfa: bool) -> AccessToken:
    """An access token whose exp - iat is exactly WORKGATE_ACCESS_TOKEN_TTL.

    Built on its own rather than derived from a refresh token, whose clock reading may differ by
    a second, and with the lifetime read from settings at issue time.
    """
    access = AccessToken.for_user(user)
    access.set_exp(lifetime=timedelta(seconds=settings.WORKGATE_ACCESS_TOKEN_TTL))
    access["mfa"] = mfa
    access[EPOCH_CLAIM] = user.sign_in_epoch
    return access


def issue_tokens(user, *, mfa: bool) -> dict:
    refresh = RefreshToken.for_user(user)
    refresh.set_exp(lifetime=timedelta(seconds=settings.WORKGATE_REFRESH_TOKEN_TTL))
    refresh["mfa"] = mfa
    refresh[EPOCH_CLAIM] = user.sign_in_epoch
    return {
        "token": str(new_access_token(user, mfa=mfa)),
        "refresh": str(refresh),
        "expiresInSec": settings.WORKGATE_ACCESS_TOKEN_TTL,
    }


def issued_under_current_password(token: Token, user) -> bool:
    """Whether `token` was issued under the user's current password hash (else it is void: the
    password changed, or Django rehashed it with stronger parameters at a sign-in).

    The access-token check is simplejwt's own (CHECK_REVOKE_TOKEN); refresh goes through here.
    """
    return token.get(api_settings.REVOKE_TOKEN_CLAIM) == get_md5_hash_password(user.password)


def token_epoch(token) -> int:
    """The sign-in epoch a token (or desktop ticket) was issued under; 0 when it carries none
    (issued before the claim existed)."""
    return token.get(EPOCH_CLAIM, 0)


def issued_in_current_epoch(token: Token, user) -> bool:
    """Whether `token` was issued after the account's last sign-out everywhere."""
    return token_epoch(token) == user.sign_in_epoch


# Set by the sign-in page: whether the browser session's sign-in verified a one-time code.
SESSION_MFA_KEY = "workgate_mfa_verified"


def token_mfa(auth) -> bool:
    """Was an OTP verified when this request's token was issued? (False for cookie sessions.)"""
    if auth is None or not hasattr(auth, "get"):
        return False
    return bool(auth.get("mfa", False))


def request_mfa(request) -> bool:
    """Did the sign-in behind this request verify an OTP?

    The access token's `mfa` claim; for the pages' cookie sessions (no token), what the sign-in
    page recorded in the session.
    """
    auth = getattr(request, "auth", None)
    if auth is not None:
        return token_mfa(auth)
    session = getattr(request, "session", None)
    return bool(session is not None and session.get(SESSION_MFA_KEY, False))
