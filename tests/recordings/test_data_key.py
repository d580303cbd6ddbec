"""The data key is wrapped with the project's encryption keys, as an EncryptedTextField holds a
secret: a rotation rewraps it and never touches the recording, whose SHA-256 stays as sealed."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from core.crypto import EncryptedTextField, decrypt, fernet
from recordings.format import (
    RecordingReader,
    data_key_text,
    new_data_key,
    unwrap_data_key,
    wrap_data_key,
)
from tests.recordings.traffic import synthetic_rfb, write_recording

OLD, NEW = Fernet.generate_key(), Fernet.generate_key()


def test_the_wrapped_key_is_what_an_encrypted_text_field_stores_for_it(settings):
    settings.WORKGATE_ENCRYPTION_KEYS = [OLD]
    key = new_data_key()

    wrapped = wrap_data_key(key)
    column = EncryptedTextField().get_prep_value(data_key_text(key))

    assert decrypt(wrapped) == decrypt(column) == data_key_text(key)
    assert unwrap_data_key(column) == key
    assert key.hex() not in wrapped and data_key_text(key) not in wrapped


def test_a_rotated_key_keeps_the_recording_readable_and_its_sha256_unchanged(settings, tmp_path):
    settings.WORKGATE_ENCRYPTION_KEYS = [OLD]
    path = tmp_path / "r.wgrec"
    key, seal = write_recording(path, synthetic_rfb(seconds=6))
    wrapped = wrap_data_key(key)
    before = path.read_bytes()

    # deployment.md's rotation: the new key first, rotate_secrets rewraps, the old key goes.
    settings.WORKGATE_ENCRYPTION_KEYS = [NEW, OLD]
    rewrapped = fernet().rotate(wrapped.encode()).decode()
    settings.WORKGATE_ENCRYPTION_KEYS = [NEW]

    with pytest.raises(ImproperlyConfigured):
        unwrap_data_key(wrapped)
    with open(path, "rb") as stream:
        verified = RecordingReader(stream, unwrap_data_key(rewrapped)).verify()
    assert path.read_bytes() == before
    assert verified.sha256 == seal.sha256 == hashlib.sha256(before).hexdigest()


def test_a_wrapped_value_that_is_not_a_data_key_is_refused(settings):
    settings.WORKGATE_ENCRYPTION_KEYS = [OLD]
    with pytest.raises(ValueError):
        unwrap_data_key(fernet().encrypt(b"c2hvcnQ=").decode())  # base64 of 5 bytes
    with pytest.raises(ValueError):
        data_key_text(b"short")
