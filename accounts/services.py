"""Sign-in, TOTP enrolment, and an administrator's reset of a lost second factor."""

from __future__ import annotations

import hmac
import time

import pyotp
from django.conf import settings
from django.contrib.auth import authenticate
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from accounts.connections import connections_close
from accounts.models import Profile, User
from accounts.selectors import profile_of
from accounts.signals import account_disabled, signed_out_everywhere
from accounts.tokens import issue_tokens
from audit import services as audit
from core.exceptions import APIError, Conflict, Forbidden
from core.network import Origin
from core.ratelimit import RateLimited, attempt_succeeded, failures_over_limit, over_limit

TOTP_ISSUER = "Workgate"
TOTP_DRIFT_STEPS = 1  # accept the previous and the next 30-second code too (clock drift)
# One-time codes checked per account in a 5-minute window, right or wrong, whatever addresses
# they come from (the per-IP sign-in limit alone lets someone who has the password spread
# guesses over many addresses). Each is counted before it is checked, so however many requests
# arrive at once (in any number of processes), no more than this many codes are ever tried.
OTP_CODES_ALLOWED = 5
OTP_CODE_RATE = f"{OTP_CODES_ALLOWED}/5m"


class AuthError(APIError):
    def __init__(self, detail: str, code: str):
        super().__init__(401, detail, code)


def _matching_step(secret: str, otp: str, *, now: float | None = None) -> int | None:
    """The TOTP time step whose code equals `otp`, looking one step either side."""
    otp = (otp or "").strip()
    if not secret or not (otp.isascii() and otp.isdigit()) or len(otp) != 6:
        return None
    totp = pyotp.TOTP(secret)
    now = time.time() if now is None else now
    current = int(now // totp.interval)
    for step in range(current - TOTP_DRIFT_STEPS, current + TOTP_DRIFT_STEPS + 1):
        if hmac.compare_digest(totp.generate_otp(step), otp):
            return step
    return None


def _consume_otp(profile: Profile, otp: str) -> str | None:
    """Verify `otp` once: None when accepted, else the failure code.

    The step is claimed with one conditional UPDATE, so the same code cannot sign in twice,
    even from two requests racing each other.
    """
    step = _matching_step(profile.totp_secret, otp)
    if step is None:
        return "invalid_otp"
    claimed = Profile.objects.filter(pk=profile.pk, totp_last_step__lt=step).update(
        totp_last_step=step
    )
    return None if claimed else "otp_reused"


def user_check_password(
    *, email: str, password: str, origin: Origin, otp: str | None = None
) -> tuple[User, bool]:
    """The first factor: the active account these credentials name, and whether `otp` was
    verified with it (then the caller does not check it again); AuthError (audited) when they
    name none.

    Failed checks are counted per email (WORKGATE_SIGNIN_ACCOUNT_RATE), whatever addresses they
    come from, and whether or not an account has that email. Past the limit an attempt is
    refused (RateLimited, audited as `account_rate_limited`) before its password is checked, so
    a right password is refused exactly as a wrong one and guessing gains nothing. The one
    exception, so that someone guessing cannot lock the owner out: an MFA account's right
    password with a valid, unused `otp` (see _past_the_limit).
    """
    normalised = (email or "").strip().lower()
    limit = {
        "group": "signin-account",
        "rate": settings.WORKGATE_SIGNIN_ACCOUNT_RATE,
        "key": f"email:{normalised}",
    }
    # Counted before the check, so attempts in flight together cannot pass the limit; a right
    # password hands its attempt back.
    wait = failures_over_limit(**limit)
    if wait is not None:
        user = _past_the_limit(email=normalised, password=password, otp=otp)
        if user is None:
            _record_password_refused(email=email, reason="account_rate_limited", origin=origin)
            raise RateLimited(wait=wait)
        attempt_succeeded(**limit)
        return user, True
    user = authenticate(username=normalised, password=password)
    if user is None:
        _record_password_refused(email=email, reason="invalid_credentials", origin=origin)
        raise AuthError("Invalid email or password.", "invalid_credentials")
    attempt_succeeded(**limit)
    return user, False


def _past_the_limit(*, email: str, password: str, otp: str | None) -> User | None:
    """The account an attempt past its limit of failed passwords still signs in to: one with
    MFA, given its right password and a valid, unused one-time code (spent here); else None.

    Without a code nothing is checked (no hashing). With one, the password is checked for any
    email, known or not (Django hashes for an unknown one too), and the code only after a
    right password: someone without the password cannot use up the owner's codes, and the
    owner's code limit (OTP_CODES_ALLOWED) still holds for someone with it."""
    if not otp:
        return None
    user = authenticate(username=email, password=password)
    if user is None:
        return None
    profile = profile_of(user)
    if not profile.mfa_enabled or _otp_attempt(user) is not None:
        return None
    return user if _consume_otp(profile, otp) is None else None


def _record_password_refused(*, email: str, reason: str, origin: Origin) -> None:
    with transaction.atomic():
        known = User.objects.filter(email__iexact=(email or "").strip()).first()
        audit.record(
            action="login_failed",
            actor=known,
            details={"email": email, "reason": reason},
            origin=origin,
            success=False,
        )


def _otp_attempt(user: User) -> int | None:
    """Count one code about to be checked for `user`; the seconds to wait if it is over the
    limit (OTP_CODES_ALLOWED), else None."""
    return over_limit(group="otp-codes", rate=OTP_CODE_RATE, key=f"user:{user.pk}")


def user_check_otp(*, user: User, otp: str | None, origin: Origin) -> None:
    """The second factor of an MFA account: AuthError (audited) when missing, wrong or replayed;
    RateLimited (audited) past OTP_CODES_ALLOWED codes in the window."""
    if not otp:
        with transaction.atomic():
            audit.record(
                action="login_failed",
                actor=user,
                details={"reason": "mfa_required"},
                origin=origin,
                success=False,
            )
        raise AuthError("A one-time code from your authenticator app is required.", "mfa_required")
    wait = _otp_attempt(user)
    if wait is not None:
        with transaction.atomic():
            audit.record(
                action="login_failed",
                actor=user,
                details={"reason": "otp_rate_limited"},
                origin=origin,
                success=False,
            )
        raise RateLimited(wait=wait)
    failure = _consume_otp(profile_of(user), otp)
    if failure is not None:
        with transaction.atomic():
            audit.record(
                action="login_failed",
                actor=user,
                details={"reason": failure},
                origin=origin,
                success=False,
            )
        message = {
            "invalid_otp": "The one-time code is not valid.",
            "otp_reused": "That one-time code was already used; wait for the next one.",
        }[failure]
        raise AuthError(message, failure)


def user_record_sign_in(*, user: User, mfa: bool, origin: Origin) -> None:
    """Both factors passed (the API's token sign-in and the pages' session sign-in alike)."""
    with transaction.atomic():
        User.objects.filter(pk=user.pk).update(last_login=timezone.now())
        audit.record(action="login", actor=user, details={"mfa": mfa}, origin=origin)


def user_record_password_change(*, user: User, origin: Origin) -> None:
    """Audit a password the person changed themselves (the admin's change-password page)."""
    audit.record(action="password_changed", actor=user, resource=f"user:{user.pk}", origin=origin)


def _end_every_sign_in(user: User) -> int:
    """Raise the account's sign-in epoch, which ends every access and refresh token and browser
    session issued before; void its unused desktop tickets (credentials too, a minute's worth
    at most: vnc_proxy's receiver of `signed_out_everywhere`); and, once the caller's
    transaction commits, close its open desktop viewers and Socket.IO sockets
    (accounts/connections.py). How many tickets were voided."""
    User.objects.filter(pk=user.pk).update(sign_in_epoch=F("sign_in_epoch") + 1)
    voided = sum(count for _, count in signed_out_everywhere.send(sender=User, user=user))
    connections_close(user_id=user.pk)
    user.refresh_from_db(fields=["sign_in_epoch"])
    return voided


def user_sign_out_everywhere(*, user: User, actor, origin: Origin) -> None:
    """End every token and browser session of `user`, on every device: access and refresh
    tokens are refused (401 `signed_out`), unused desktop tickets are void, browser sessions
    ask for a sign-in again from their next request, a running assistant turn may no longer
    call tools, and open desktop viewers and Socket.IO sockets are closed once this commits.
    The password stays as it is, and the desktops keep running.
    By the person themselves or an administrator (`actor`); audited as
    `signed_out_everywhere`."""
    with transaction.atomic():
        voided = _end_every_sign_in(user)
        audit.record(
            action="signed_out_everywhere",
            actor=actor,
            resource=f"user:{user.pk}",
            details={"email": user.email, "desktop_passes_voided": voided},
            origin=origin,
        )


def user_disabled(*, user: User, actor, origin: Origin) -> int:
    """An administrator has just turned `user`'s account off (saved in the caller's
    transaction): what it has running ends now (the receivers of `account_disabled`:
    sessions_app ends its live desktop sessions, which closes their relay connections), and it
    is signed out everywhere, all in one transaction, so turning it on again brings none of it
    back. How many sessions ended."""
    with transaction.atomic():
        responses = account_disabled.send(sender=User, user=user, actor=actor, origin=origin)
        user_sign_out_everywhere(user=user, actor=actor, origin=origin)
    return sum(count for _, count in responses)


def user_password_replaced(*, user: User) -> None:
    """A new password was saved for `user`: everything signed in with the old one ends as on
    signing out everywhere (a stolen token, session, desktop ticket or open viewer outlives no
    password reset). Called by User.save in the transaction that writes the password, so no
    way of setting one misses it (the admin's forms, `manage.py changepassword`, a shell).
    Audited as `signed_out_everywhere` with `reason: password_changed`, by no one: who set
    the password is on the entry written with it (`admin_change`, `password_changed`).
    Django's rehash of a password at sign-in is not a new password and does not come here."""
    voided = _end_every_sign_in(user)
    audit.record(
        action="signed_out_everywhere",
        resource=f"user:{user.pk}",
        details={
            "email": user.email,
            "desktop_passes_voided": voided,
            "reason": "password_changed",
        },
    )


def user_record_sign_out(*, user: User, origin: Origin) -> None:
    """A browser session ended by its user (tokens simply expire; they have no sign-out)."""
    with transaction.atomic():
        audit.record(action="logout", actor=user, origin=origin)


def user_sign_in(*, email: str, password: str, otp: str | None, origin: Origin) -> dict:
    user, otp_verified = user_check_password(email=email, password=password, otp=otp, origin=origin)
    mfa = profile_of(user).mfa_enabled
    if mfa and not otp_verified:
        user_check_otp(user=user, otp=otp, origin=origin)
    user_record_sign_in(user=user, mfa=mfa, origin=origin)
    return {"user": user, **issue_tokens(user, mfa=mfa)}


def mfa_setup(*, user, password: str, origin: Origin) -> dict:
    """Start TOTP enrolment: a new secret, stored encrypted, enabled only after `mfa_verify`.

    The password is asked again (a wrong one audited and counted like a failed sign-in, 403
    `invalid_password`; 429 past the account's limit): a stolen access token or session cookie
    alone must not bind its holder's authenticator to the account, which would lock its owner
    out, nor guess the password from many addresses."""
    try:
        user_check_password(email=user.email, password=password, origin=origin)
    except AuthError:
        raise Forbidden("The password is not correct.", "invalid_password") from None
    with transaction.atomic():
        profile = Profile.objects.select_for_update().get(pk=profile_of(user).pk)
        if profile.mfa_enabled:
            raise Conflict("MFA is already enabled for this account.", "mfa_already_enabled")
        profile.totp_secret = pyotp.random_base32()
        profile.totp_last_step = 0
        profile.save(update_fields=["totp_secret", "totp_last_step"])
    return {"secret": profile.totp_secret, "otpauth_uri": totp_uri(user, profile.totp_secret)}


def totp_uri(user, secret: str) -> str:
    """The otpauth:// URI an authenticator app takes (as a QR code or a link) for `secret`."""
    return pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=TOTP_ISSUER)


def mfa_verify(*, user, otp: str, origin: Origin) -> None:
    with transaction.atomic():
        profile = Profile.objects.select_for_update().get(pk=profile_of(user).pk)
        if profile.mfa_enabled:
            raise Conflict("MFA is already enabled for this account.", "mfa_already_enabled")
        if not profile.totp_secret:
            raise Conflict("Start with POST /api/auth/mfa/setup.", "mfa_not_started")
        wait = _otp_attempt(user)
        if wait is not None:
            raise RateLimited(wait=wait)
        failure = _consume_otp(profile, otp)
        if failure is None:
            profile.mfa_enabled = True
            profile.mfa_enabled_at = timezone.now()
            profile.save(update_fields=["mfa_enabled", "mfa_enabled_at"])
            audit.record(
                action="mfa_enabled", actor=user, resource=f"user:{user.pk}", origin=origin
            )
            return
    # A wrong first code changes nothing but is on the record, and was counted like a sign-in
    # code (the same per-account limit).
    with transaction.atomic():
        audit.record(
            action="mfa_enabled",
            actor=user,
            resource=f"user:{user.pk}",
            details={"reason": failure},
            origin=origin,
            success=False,
        )
    raise APIError(400, "The one-time code is not valid.", failure)


def mfa_reset(*, user: User, actor, origin: Origin) -> bool:
    """Turn `user`'s two-step sign-in off, for a lost or replaced phone: the secret (and any
    half-finished enrolment) is erased, so the next sign-in asks for the password alone, and
    where MFA is required, to enrol again. Audited as `mfa_reset`; False, and nothing written,
    when there was nothing to reset."""
    with transaction.atomic():
        profile = Profile.objects.select_for_update().get(pk=profile_of(user).pk)
        if not profile.mfa_enabled and not profile.totp_secret:
            return False
        was_enabled = profile.mfa_enabled
        profile.mfa_enabled = False
        profile.mfa_enabled_at = None
        profile.totp_secret = ""
        profile.totp_last_step = 0
        profile.save(
            update_fields=["mfa_enabled", "mfa_enabled_at", "totp_secret", "totp_last_step"]
        )
        audit.record(
            action="mfa_reset",
            actor=actor,
            resource=f"user:{user.pk}",
            details={"email": user.email, "was_enabled": was_enabled},
            origin=origin,
        )
    return True
