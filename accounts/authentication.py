"""API authentication: the access token in `x-access-token` or `Authorization: Bearer`."""

from __future__ import annotations

from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import AuthenticationFailed

from accounts.tokens import issued_in_current_epoch

SIGNED_OUT = "The account was signed out everywhere; sign in again."


class AccessTokenAuthentication(JWTAuthentication):
    """simplejwt's checks (signature, HS256 only, exp, token type, active user, the password it
    was issued under) and the account's sign-in epoch; two headers.

    A request that carries no token falls through to the session cookie (browser pages); a
    request that carries a bad token is refused outright with 401, never treated as anonymous.
    """

    def get_header(self, request):
        token = request.META.get("HTTP_X_ACCESS_TOKEN")
        if token:
            return b"Bearer " + token.strip().encode("latin-1")
        return super().get_header(request)

    def get_user(self, validated_token):
        user = super().get_user(validated_token)
        if not issued_in_current_epoch(validated_token, user):
            raise AuthenticationFailed(SIGNED_OUT, code="signed_out")
        return user
