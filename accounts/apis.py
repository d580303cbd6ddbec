from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.tokens import RefreshToken

from accounts import serializers as s
from accounts.authentication import SIGNED_OUT, AccessTokenAuthentication
from accounts.models import User
from accounts.selectors import profile_data
from accounts.services import (
    AuthError,
    mfa_setup,
    mfa_verify,
    user_sign_in,
    user_sign_out_everywhere,
)
from accounts.tokens import (
    issued_in_current_epoch,
    issued_under_current_password,
    new_access_token,
)
from core.network import Origin
from core.ratelimit import enforce, key_by_ip
from core.serializers import ErrorOutput

ERRORS = {400: ErrorOutput, 401: ErrorOutput, 403: ErrorOutput, 429: ErrorOutput}


class SignInApi(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        tags=["auth"],
        request=s.SignInInput,
        responses={200: s.SignInOutput, **ERRORS},
        summary="Sign in with email, password and (for MFA accounts) a TOTP code",
        description="429 `rate_limited` with Retry-After past WORKGATE_SIGNIN_RATE attempts "
        "from the address, or WORKGATE_SIGNIN_ACCOUNT_RATE failed passwords for the email "
        "(from any addresses, whether or not an account has it). Past the email's limit the "
        "password is not checked and every attempt is refused alike, except an MFA account's "
        "right password sent with a valid, unused `otp`.",
    )
    def post(self, request):
        enforce(request, group="signin", rate=settings.WORKGATE_SIGNIN_RATE, key=key_by_ip)
        data = s.SignInInput(data=request.data)
        data.is_valid(raise_exception=True)
        result = user_sign_in(
            email=data.validated_data["email"],
            password=data.validated_data["password"],
            otp=data.validated_data.get("otp") or None,
            origin=Origin.of(request),
        )
        return Response(
            {
                "success": True,
                "token": result["token"],
                "refresh": result["refresh"],
                "expiresInSec": result["expiresInSec"],
                "profile": profile_data(result["user"]),
            }
        )


class RefreshApi(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        tags=["auth"],
        request=s.RefreshInput,
        responses={200: s.RefreshOutput, **ERRORS},
        summary="Exchange a refresh token for a new access token",
    )
    def post(self, request):
        enforce(request, group="refresh", rate=settings.WORKGATE_REFRESH_RATE, key=key_by_ip)
        data = s.RefreshInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            refresh = RefreshToken(data.validated_data["refresh"])
        except TokenError as exc:
            raise AuthError("The refresh token is invalid or expired.", "token_not_valid") from exc
        user = User.objects.filter(pk=refresh.get("user_id"), is_active=True).first()
        if user is None:
            raise AuthError("The account is inactive or no longer exists.", "user_inactive")
        if not issued_under_current_password(refresh, user):
            raise AuthError("The password has changed; sign in again.", "password_changed")
        if not issued_in_current_epoch(refresh, user):
            raise AuthError(SIGNED_OUT, "signed_out")
        access = new_access_token(user, mfa=bool(refresh.get("mfa", False)))
        return Response(
            {
                "success": True,
                "token": str(access),
                "expiresInSec": settings.WORKGATE_ACCESS_TOKEN_TTL,
            }
        )


class SignOutEverywhereApi(APIView):
    @extend_schema(
        tags=["auth"],
        request=None,
        responses={200: s.SignOutOutput, 401: ErrorOutput},
        summary="Sign the caller's account out everywhere",
        description="Every access and refresh token of the account, this request's included, "
        "every browser session signed in to it and every desktop ticket not yet used stop "
        "working (401 `signed_out`), and a running assistant turn may no longer call tools; "
        "the account's open desktop viewers (relay code 4411) and Socket.IO sockets are closed; "
        "the password does not change and running desktops keep running. Sign in again for "
        "new tokens. JWTs cannot be revoked one by one: this is "
        "the sign-out for a lost device or a leaked token.",
    )
    def post(self, request):
        user_sign_out_everywhere(user=request.user, actor=request.user, origin=Origin.of(request))
        return Response({"success": True, "message": "Signed out everywhere"})


class MeApi(APIView):
    @extend_schema(tags=["auth"], responses={200: s.MeOutput, 401: ErrorOutput})
    def get(self, request):
        return Response({"success": True, "profile": profile_data(request.user)})


class MfaSetupApi(APIView):
    # A token only, never the session cookie (the pages' /account/mfa has its own form), and
    # the password again: a token alone must not bind a factor.
    authentication_classes = [AccessTokenAuthentication]

    @extend_schema(
        tags=["auth"],
        request=s.MfaSetupInput,
        responses={200: s.MfaSetupOutput, **ERRORS, 409: ErrorOutput},
        summary="Start TOTP enrolment: a secret and an otpauth:// URI for an authenticator app",
        description="Asks for the password again: 403 `invalid_password` when it is wrong "
        "(audited as a failed sign-in and counted with the sign-in attempts of the address and "
        "the failed passwords of the account: 429 past either limit).",
    )
    def post(self, request):
        enforce(request, group="signin", rate=settings.WORKGATE_SIGNIN_RATE, key=key_by_ip)
        data = s.MfaSetupInput(data=request.data)
        data.is_valid(raise_exception=True)
        secret = mfa_setup(
            user=request.user,
            password=data.validated_data["password"],
            origin=Origin.of(request),
        )
        return Response({"success": True, **secret})


class MfaVerifyApi(APIView):
    authentication_classes = [AccessTokenAuthentication]

    @extend_schema(
        tags=["auth"],
        request=s.MfaVerifyInput,
        responses={
            200: s.MfaVerifyOutput,
            400: ErrorOutput,
            401: ErrorOutput,
            409: ErrorOutput,
            429: ErrorOutput,
        },
        summary="Confirm TOTP enrolment with a current code; MFA is enabled from then on",
    )
    def post(self, request):
        data = s.MfaVerifyInput(data=request.data)
        data.is_valid(raise_exception=True)
        mfa_verify(user=request.user, otp=data.validated_data["otp"], origin=Origin.of(request))
        return Response({"success": True, "mfa_enabled": True})
