"""Secrets at rest: Fernet with WORKGATE_ENCRYPTION_KEY, MultiFernet so keys can rotate.

The first key encrypts; every key decrypts. `manage.py rotate_secrets` is not needed for reads to
keep working after a rotation: list the new key first and the old one after it.
"""

from __future__ import annotations

from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models


@cache
def _fernet(keys: tuple[bytes, ...]) -> MultiFernet:
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except ValueError as exc:
        raise ImproperlyConfigured(
            "WORKGATE_ENCRYPTION_KEY holds a value that is not a Fernet key"
        ) from exc


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.WORKGATE_ENCRYPTION_KEYS))


def encrypt(plaintext: str) -> str:
    return fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise ImproperlyConfigured(
            "A stored secret cannot be decrypted with WORKGATE_ENCRYPTION_KEY; "
            "was a key removed from the rotation list?"
        ) from exc


class EncryptedTextField(models.TextField):
    """A text column holding Fernet ciphertext; Python code only ever sees the plaintext.

    An empty string stays empty (no secret set), so `bool(value)` answers "is a secret set".
    """

    def from_db_value(self, value, expression, connection):
        if not value:
            return value
        return decrypt(value)

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if not value:
            return value
        return encrypt(value)
