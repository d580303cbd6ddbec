"""Sign-in pages: email and password, then a one-time code for MFA accounts; sign-out.

The pages sign in with a Django session (the browser's cookie), not a token. The session
remembers whether a one-time code was verified, so launching a workspace that needs MFA works
from the pages exactly as it does with an MFA token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from urllib.parse import urlencode

import segno
from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import AdminSite
from django.contrib.auth import login, logout
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import mark_safe
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods

from accounts.models import User
from accounts.selectors import profile_of
from accounts.services import (
    AuthError,
    mfa_setup,
    mfa_verify,
    totp_uri,
    user_check_otp,
    user_check_password,
    user_record_password_change,
    user_record_sign_in,
    user_record_sign_out,
    user_sign_out_everywhere,
)
from accounts.tokens import SESSION_MFA_KEY, request_mfa
from core.exceptions import APIError, Forbidden
from core.network import Origin
from core.ratelimit import RateLimited, enforce, key_by_ip

# Between the password and the one-time code, the session holds who passed the first factor.
PENDING_KEY = "workgate_login_pending"
PENDING_TTL = 300  # seconds to type the code before starting over
MFA_VERIFIED_KEY = SESSION_MFA_KEY
MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"


def _otp_field(*, required: bool = True) -> forms.RegexField:
    return forms.RegexField(
        regex=r"^\s*[0-9]{6}\s*$",  # \d would take any script's digits
        label="One-time code",
        required=required,
        error_messages={"invalid": "Enter the 6 digits shown by your authenticator app."},
        widget=forms.TextInput(
            attrs={
                "autocomplete": "one-time-code",
                "inputmode": "numeric",
                "maxlength": "7",
                "autofocus": required,
            }
        ),
    )


class PasswordForm(forms.Form):
    email = forms.EmailField(
        widget=forms.EmailInput(attrs={"autocomplete": "username", "autofocus": True})
    )
    password = forms.CharField(
        strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "current-password"})
    )
    # Shown once an email is past its limit of failed passwords: an MFA account still signs in
    # with its password and a code together (accounts.services.user_check_password).
    otp = _otp_field(required=False)


class OtpForm(forms.Form):
    otp = _otp_field()


def session_mfa_verified(request) -> bool:
    """Did this browser session's sign-in verify a one-time code?"""
    return request_mfa(request)


def _next_url(request) -> str:
    candidate = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return settings.LOGIN_REDIRECT_URL


def _pending_user(request) -> User | None:
    pending = request.session.get(PENDING_KEY)
    if not pending or pending.get("expires_at", 0) < time.time():
        request.session.pop(PENDING_KEY, None)
        return None
    user = User.objects.filter(pk=pending["user_id"], is_active=True).first()
    if user is None or not profile_of(user).mfa_enabled:
        # Gone, or its second factor was reset since the password step: start again.
        request.session.pop(PENDING_KEY, None)
        return None
    return user


def _finish(request, user: User, *, mfa: bool, next_url: str):
    user_record_sign_in(user=user, mfa=mfa, origin=Origin.of(request))
    request.session.pop(PENDING_KEY, None)
    login(request, user, backend=MODEL_BACKEND)  # rotates the session key
    request.session[MFA_VERIFIED_KEY] = mfa
    return redirect(next_url)


def _rate_limited(request, form) -> bool:
    try:
        enforce(request, group="signin", rate=settings.WORKGATE_SIGNIN_RATE, key=key_by_ip)
    except RateLimited as exc:
        form.add_error(None, f"Too many attempts; try again in {exc.wait:.0f} seconds.")
        return True
    return False


@sensitive_post_parameters("password", "otp")
@never_cache
@require_http_methods(["GET", "POST"])
def login_page(request):
    next_url = _next_url(request)
    if request.method == "GET" and "restart" in request.GET:
        request.session.pop(PENDING_KEY, None)
    if request.user.is_authenticated and request.method == "GET":
        return redirect(next_url)

    pending = _pending_user(request)
    if pending is not None:
        return _otp_step(request, pending, next_url)

    form = PasswordForm(request.POST if request.method == "POST" else None)
    ask_otp = bool(request.POST.get("otp"))
    if request.method == "POST" and form.is_valid() and not _rate_limited(request, form):
        otp = form.cleaned_data["otp"].strip() or None
        try:
            user, otp_verified = user_check_password(
                email=form.cleaned_data["email"],
                password=form.cleaned_data["password"],
                otp=otp,
                origin=Origin.of(request),
            )
        except AuthError as exc:
            form.add_error(None, str(exc.detail))
        except RateLimited as exc:
            form.add_error(
                None,
                f"Too many failed sign-ins for this account; try again in {exc.wait:.0f} "
                "seconds. With two-step sign-in, you can sign in now with your password and a "
                "one-time code.",
            )
            ask_otp = True
        else:
            mfa = profile_of(user).mfa_enabled
            if not mfa or otp_verified:
                return _finish(request, user, mfa=mfa, next_url=next_url)
            request.session[PENDING_KEY] = {
                "user_id": user.pk,
                "expires_at": time.time() + PENDING_TTL,
            }
            # A code that came with the password is checked as if typed on the code step.
            return _otp_step(request, user, next_url, form=None if otp else OtpForm())
    context = {"form": form, "next": next_url, "ask_otp": ask_otp}
    return render(request, "accounts/login.html", context)


def _otp_step(request, user: User, next_url: str, form: OtpForm | None = None):
    if form is None:
        form = OtpForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid() and not _rate_limited(request, form):
            try:
                user_check_otp(
                    user=user, otp=form.cleaned_data["otp"].strip(), origin=Origin.of(request)
                )
            except AuthError as exc:
                form.add_error("otp", str(exc.detail))
            except RateLimited as exc:
                form.add_error("otp", f"Too many codes tried; try again in {exc.wait:.0f} seconds.")
            else:
                return _finish(request, user, mfa=True, next_url=next_url)
    return render(
        request, "accounts/login_otp.html", {"form": form, "next": next_url, "email": user.email}
    )


@never_cache
@require_http_methods(["GET", "POST"])
def logout_page(request):
    # Signing out changes state, so it is a POST (CSRF-checked); a GET only asks.
    if request.method == "POST":
        everywhere = request.POST.get("everywhere") == "1" and request.user.is_authenticated
        if request.user.is_authenticated:
            origin = Origin.of(request)
            if everywhere:
                user_sign_out_everywhere(user=request.user, actor=request.user, origin=origin)
            else:
                user_record_sign_out(user=request.user, origin=origin)
        logout(request)
        messages.success(
            request,
            "You are signed out on every browser and app." if everywhere else "You are signed out.",
        )
        return redirect("login")
    return render(request, "accounts/logout.html")


def admin_logout(request, extra_context=None):
    """The Django admin signs out through /logout too, so every sign-out is audited."""
    return logout_page(request)


@sensitive_post_parameters()
def admin_password_change(request, extra_context=None):
    """The Django admin's own "change my password" page, audited: the new password and its
    `password_changed` entry commit together (the change also ends the account's tokens)."""
    with transaction.atomic():
        response = AdminSite.password_change(admin.site, request, extra_context)
        if request.method == "POST" and response.status_code == 302:
            user_record_password_change(user=request.user, origin=Origin.of(request))
    return response


def admin_login(request, extra_context=None):
    """The Django admin signs in through /login too, so an MFA account's code is never skipped."""
    next_url = request.GET.get("next", "")
    if not url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()}):
        next_url = reverse("admin:index")
    if request.user.is_authenticated:
        if request.user.is_active and request.user.is_staff:
            return redirect(next_url)
        raise PermissionDenied("Administration is for administrators.")
    return redirect(f"{reverse('login')}?{urlencode({'next': next_url})}")


def _qr_svg(uri: str) -> str:
    """The otpauth:// URI as an inline SVG QR code, drawn on the server (no script needed)."""
    return segno.make(uri, error="m").svg_inline(
        scale=5, dark="#111", light="#fff", title="QR code for your authenticator app"
    )


def _enrolment(request, form: OtpForm, proof: str) -> dict:
    """What the page shows while a secret is waiting for its first code."""
    user = request.user
    secret = profile_of(user).totp_secret
    uri = totp_uri(user, secret)
    return {
        "form": form,
        "enrolment_proof": proof,
        "secret_groups": [secret[index : index + 4] for index in range(0, len(secret), 4)],
        "otpauth_uri": uri,
        "qr_svg": mark_safe(_qr_svg(uri)),  # noqa: S308 - segno's own markup, no user input
    }


class ConfirmPasswordForm(forms.Form):
    password = forms.CharField(
        label="Your password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )


# Set by the page's password-checked "Set up", for this session only: what may show the
# pending secret and confirm it. The session keeps a digest of a proof that only the answer to
# the password went out with (a hidden field of its form), so the session cookie alone, stolen
# in those minutes, neither shows the secret again nor confirms it.
ENROLMENT_KEY = "workgate_mfa_enrolment"
ENROLMENT_TTL = 600  # seconds to scan the code and type the first one
ENROLMENT_PROOF_FIELD = "enrolment"


def _digest(proof: str) -> str:
    return hashlib.sha256(proof.encode()).hexdigest()


def _start_enrolment(request) -> str:
    proof = secrets.token_urlsafe(32)
    request.session[ENROLMENT_KEY] = {
        "user_id": request.user.pk,
        "expires_at": time.time() + ENROLMENT_TTL,
        "proof": _digest(proof),
    }
    return proof


def _enrolling(request) -> bool:
    """Whether this POST continues the enrolment this session started, with its proof."""
    started = request.session.get(ENROLMENT_KEY)
    if not started or started.get("user_id") != request.user.pk:
        return False
    proof = request.POST.get(ENROLMENT_PROOF_FIELD, "")
    return started.get("expires_at", 0) >= time.time() and hmac.compare_digest(
        _digest(proof), started.get("proof", "")
    )


@login_required
@sensitive_post_parameters("password", "otp")
@never_cache
@require_http_methods(["GET", "POST"])
def mfa_page(request):
    """Two-step sign-in for the signed-in person: start (with the password again, then a new
    secret shown as a QR code and as text), then confirm with a first code (MFA is on from then
    on). The same services as /api/auth/mfa/setup and /verify; a GET changes nothing about MFA.

    The password is asked again so that a stolen session cookie alone can neither bind the
    thief's authenticator nor read a pending secret, nor make the session count as verified by
    a second factor: only a session that passed the password check here shows the secret and
    may confirm it (the API takes a token, never the cookie).
    """
    profile = profile_of(request.user)
    context = {"profile": profile, "password_form": ConfirmPasswordForm()}
    action = request.POST.get("action") if request.method == "POST" else None
    if action == "start":
        form = ConfirmPasswordForm(request.POST)
        context["password_form"] = form
        if form.is_valid() and not _rate_limited(request, form):
            try:
                mfa_setup(
                    user=request.user,
                    password=form.cleaned_data["password"],
                    origin=Origin.of(request),
                )
            except Forbidden as exc:
                form.add_error("password", str(exc.detail))
            except RateLimited as exc:
                form.add_error(
                    "password", f"Too many attempts; try again in {exc.wait:.0f} seconds."
                )
            except APIError as exc:
                messages.error(request, str(exc.detail))
                return redirect("account-mfa")
            else:
                context.update(_enrolment(request, OtpForm(), _start_enrolment(request)))
    elif action == "verify" and _enrolling(request) and not profile.mfa_enabled:
        form = OtpForm(request.POST)
        if form.is_valid():
            try:
                mfa_verify(
                    user=request.user,
                    otp=form.cleaned_data["otp"].strip(),
                    origin=Origin.of(request),
                )
            except APIError as exc:
                form.add_error("otp", str(exc.detail))
            except RateLimited as exc:
                form.add_error("otp", f"Too many codes tried; try again in {exc.wait:.0f} seconds.")
            else:
                # Password and code just proved both factors: a new session key, verified.
                request.session.pop(ENROLMENT_KEY, None)
                request.session.cycle_key()
                request.session[MFA_VERIFIED_KEY] = True
                messages.success(request, "Two-step sign-in is on.")
                return redirect("account-mfa")
        context.update(_enrolment(request, form, request.POST[ENROLMENT_PROOF_FIELD]))
    return render(request, "accounts/mfa.html", context)
