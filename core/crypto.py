"""Secrets at rest: Fernet with WORKGATE_ENCRYPTION_KEY, MultiFernet so keys can rotate.

The first key encrypts; every key decrypts. Reads keep working after a rotation once the new key
is listed first and the old one after it; `manage.py rotate_secrets` then re-encrypts every
stored secret with the first key, and `rotate_secrets --check` says whether any is still under
another (until none is, the old key must stay in the list).
"""

from __future__ import annotations

from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models, transaction
from django.db.models import Value
from django.db.models.functions import Cast


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


# --- Rotation --------------------------------------------------------------------------------


def encrypted_columns() -> list[tuple[type[models.Model], models.Field]]:
    """Every EncryptedTextField of every installed model."""
    from django.apps import apps

    return [
        (model, field)
        for model in apps.get_models()
        for field in model._meta.concrete_fields
        if isinstance(field, EncryptedTextField)
    ]


def _under_first_key(token: str) -> bool:
    try:
        Fernet(settings.WORKGATE_ENCRYPTION_KEYS[0]).decrypt(token.encode())
    except InvalidToken:
        return False
    return True


def _stored(model, field):
    """(primary key, ciphertext as stored) of every row holding a secret in `field`: read through
    a cast to plain text, which skips the field's decryption."""
    return (
        model._default_manager.exclude(**{field.name: ""})
        .annotate(stored=Cast(field.name, output_field=models.TextField()))
        .order_by("pk")
        .values_list("pk", "stored")
    )


def secrets_not_under_first_key() -> dict[str, int]:
    """How many stored secrets each column still holds under a key other than the first."""
    counts = {}
    for model, field in encrypted_columns():
        behind = sum(not _under_first_key(token) for _, token in _stored(model, field))
        if behind:
            counts[f"{model._meta.label}.{field.name}"] = behind
    return counts


def secrets_rotate() -> int:
    """Re-encrypt every stored secret not yet under the first key with it; how many were.

    The ciphertext is rotated as stored (decrypted with whichever key opens it, encrypted with
    the first), all in one transaction with the rows locked (in key order), so a secret written
    meanwhile is never overwritten with an older one, and a secret no key opens rewrites
    nothing. The caller audits it in its own transaction around this one (core imports no app:
    `manage.py rotate_secrets` writes `secrets_rotated`, with the count)."""
    rotated = 0
    with transaction.atomic():
        for model, field in encrypted_columns():
            # NO KEY: rows referencing these (a ticket, its session) take KEY SHARE, so ticket
            # issue, which holds the audit chain's lock by then, never waits on the rotation.
            for pk, token in _stored(model, field).select_for_update(no_key=True):
                if _under_first_key(token):
                    continue
                try:
                    fresh = fernet().rotate(token.encode()).decode()
                except InvalidToken as exc:
                    raise ImproperlyConfigured(
                        f"{model._meta.label}.{field.name} of {pk} cannot be decrypted with "
                        "WORKGATE_ENCRYPTION_KEY; was a key removed from the rotation list?"
                    ) from exc
                # A plain-text value is written as it is: the field would encrypt it again.
                stored = Value(fresh, output_field=models.TextField())
                model._default_manager.filter(pk=pk).update(**{field.name: stored})
                rotated += 1
    return rotated
