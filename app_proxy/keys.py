"""The keys that sign identity assertions for web apps behind the gateway (issue 21), and their
public half as a JWK Set (`/.well-known/workgate-jwks.json`), so an app can check that a request
came through Workgate and for whom.

WORKGATE_APP_SIGNING_KEY is a PEM private key, EC P-256 (ES256) or RSA of at least 2048 bits
(RS256); WORKGATE_APP_PREVIOUS_SIGNING_KEY, while keys are rotated, is published too but signs
nothing, so apps that cached the set keep verifying until they fetch it again.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

MIN_RSA_BITS = 2048


@dataclass(frozen=True)
class SigningKey:
    private: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    algorithm: str  # ES256 or RS256
    kid: str  # the RFC 7638 thumbprint of its public JWK

    def public_jwk(self) -> dict:
        public = self.private.public_key()
        converter = ECAlgorithm if self.algorithm == "ES256" else RSAAlgorithm
        jwk = converter.to_jwk(public, as_dict=True)
        return {**jwk, "kid": self.kid, "alg": self.algorithm, "use": "sig"}


def load_signing_key(pem: str, *, setting: str) -> SigningKey:
    """A key from its PEM; ImproperlyConfigured, naming the setting, for anything else than a
    P-256 or a 2048-bit-or-more RSA private key."""
    try:
        private = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(
            f"{setting} is not a PEM private key without a passphrase"
        ) from exc
    if isinstance(private, ec.EllipticCurvePrivateKey) and isinstance(private.curve, ec.SECP256R1):
        algorithm, converter = "ES256", ECAlgorithm
    elif isinstance(private, rsa.RSAPrivateKey) and private.key_size >= MIN_RSA_BITS:
        algorithm, converter = "RS256", RSAAlgorithm
    else:
        raise ImproperlyConfigured(
            f"{setting} must be an EC P-256 key (ES256) or an RSA key of at least "
            f"{MIN_RSA_BITS} bits (RS256)"
        )
    return SigningKey(
        private=private,
        algorithm=algorithm,
        kid=_thumbprint(converter.to_jwk(private.public_key(), as_dict=True)),
    )


def _thumbprint(jwk: dict) -> str:
    """RFC 7638: the SHA-256 of the key's required members, in order, without whitespace."""
    required = ("crv", "kty", "x", "y") if jwk["kty"] == "EC" else ("e", "kty", "n")
    canonical = json.dumps({name: jwk[name] for name in required}, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@functools.cache
def signing_key() -> SigningKey | None:
    """The key assertions are signed with; None where none is configured."""
    pem = settings.WORKGATE_APP_SIGNING_KEY
    return load_signing_key(pem, setting="WORKGATE_APP_SIGNING_KEY") if pem else None


@functools.cache
def published_keys() -> tuple[SigningKey, ...]:
    """Every key an app may see a valid assertion signed with: the current, then the previous."""
    previous = settings.WORKGATE_APP_PREVIOUS_SIGNING_KEY
    keys = [signing_key()]
    if previous:
        keys.append(load_signing_key(previous, setting="WORKGATE_APP_PREVIOUS_SIGNING_KEY"))
    return tuple(key for key in keys if key is not None)


def jwks() -> dict:
    return {"keys": [key.public_jwk() for key in published_keys()]}
