from __future__ import annotations

from django.contrib.auth.models import AbstractUser, BaseUserManager
from django.db import models, transaction
from django.db.models.functions import Lower
from django.utils.crypto import salted_hmac

from core.crypto import EncryptedTextField


class UserManager(BaseUserManager):
    use_in_migrations = True

    def _create_user(self, email: str, password: str | None, **extra):
        if not email:
            raise ValueError("An email address is required")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def get_by_natural_key(self, username):
        # Addresses are stored lowercase: createsuperuser's duplicate check and the sign-in
        # backend find an account whatever the case typed.
        return self.get(email=(username or "").strip().lower())

    def create_user(self, email: str, password: str | None = None, **extra):
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra)

    def create_superuser(self, email: str, password: str | None = None, **extra):
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        return self._create_user(email, password, **extra)


class User(AbstractUser):
    """A person who signs in with an email address. `is_staff` is "admin" in the API."""

    username = None
    email = models.EmailField("email address", unique=True)

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    # Raised to sign the account out everywhere (accounts.services.user_sign_out_everywhere):
    # tokens carry the value they were issued under, browser sessions hash it with the password.
    sign_in_epoch = models.PositiveIntegerField(default=0, editable=False)

    objects = UserManager()

    class Meta(AbstractUser.Meta):
        constraints = [
            # Sign-in lowercases what is typed: two addresses differing only in case would be
            # one person's sign-in matching another's account.
            models.UniqueConstraint(
                Lower("email"),
                name="accounts_user_email_ci_unique",
                violation_error_message="An account with this email address already exists.",
            ),
        ]

    def __str__(self) -> str:
        return self.email

    def clean(self):
        super().clean()
        self.email = (self.email or "").strip().lower()

    # Set by set_password and set_unusable_password until the row is saved; not by Django's
    # rehash of a password it checked with stronger parameters (the same password).
    _password_replaced = False
    _rehashing = False

    def save(self, *args, **kwargs):
        self.email = (self.email or "").strip().lower()
        if not self._state.adding and kwargs.get("update_fields") is None and not args:
            # The epoch only ever rises, through its own UPDATE: a full save of a copy loaded
            # before a sign-out everywhere (an admin's form, say) must not write it back.
            kwargs["update_fields"] = [
                field.name
                for field in self._meta.concrete_fields
                if not field.primary_key and field.name != "sign_in_epoch"
            ]
        fields = kwargs.get("update_fields")
        writes_password = fields is None or "password" in fields
        if not (self._password_replaced and writes_password and not self._state.adding):
            super().save(*args, **kwargs)
            if writes_password:
                self._password_replaced = False  # a new account's first password
            return
        # A new password for an existing account, whoever set it: the admin's forms, the
        # changepassword command and a shell all save it here, and only here. The old one's
        # sign-ins end with the row's write, in its transaction.
        from accounts.services import user_password_replaced  # it imports this module

        with transaction.atomic():
            super().save(*args, **kwargs)
            self._password_replaced = False
            user_password_replaced(user=self)

    def set_password(self, raw_password):
        super().set_password(raw_password)
        self._password_replaced = not self._rehashing

    def set_unusable_password(self):
        super().set_unusable_password()
        self._password_replaced = True

    def check_password(self, raw_password):
        # Django saves a rehash of the password it checks through set_password.
        self._rehashing = True
        try:
            return super().check_password(raw_password)
        finally:
            self._rehashing = False

    async def acheck_password(self, raw_password):
        self._rehashing = True
        try:
            return await super().acheck_password(raw_password)
        finally:
            self._rehashing = False

    def _get_session_auth_hash(self, secret=None):
        """What a browser session is bound to (Django checks it on every request): Django's
        HMAC of the password, and once the account has been signed out everywhere, of the
        password and the epoch, so that sign-out ends every session signed in before it.
        (Django's get_session_auth_hash and its SECRET_KEY_FALLBACKS variant both call this.)"""
        if not self.sign_in_epoch:
            return super()._get_session_auth_hash(secret=secret)
        return salted_hmac(
            "workgate.accounts.User.get_session_auth_hash",
            f"{self.password}\0{self.sign_in_epoch}",
            secret=secret,
            algorithm="sha256",
        ).hexdigest()


class Profile(models.Model):
    """TOTP state. The secret is encrypted at rest; `totp_last_step` stops a code being replayed."""

    user = models.OneToOneField(User, on_delete=models.CASCADE, related_name="profile")
    mfa_enabled = models.BooleanField(default=False)
    totp_secret = EncryptedTextField(blank=True, default="")
    totp_last_step = models.BigIntegerField(default=0)
    mfa_enabled_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"profile of {self.user}"
