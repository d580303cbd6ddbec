"""The identity assertion an app behind the gateway gets, and the keys it checks it with: what
an app's own code (PyJWT here, as an app would use it) sees at /.well-known/workgate-jwks.json."""

from __future__ import annotations

import os
from datetime import timedelta

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.contrib.auth.models import Group
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from app_proxy import keys
from app_proxy.assertions import NoSigningKey, assertion_for
from tests.support.processes import ROOT, import_fresh

pytestmark = pytest.mark.django_db


def pem(private) -> str:
    return private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@pytest.fixture
def signing(settings):
    """Configure signing keys; the loaded keys are forgotten before and after."""

    def configure(current: str = "", previous: str = "") -> None:
        settings.WORKGATE_APP_SIGNING_KEY = current
        settings.WORKGATE_APP_PREVIOUS_SIGNING_KEY = previous
        keys.signing_key.cache_clear()
        keys.published_keys.cache_clear()

    yield configure
    keys.signing_key.cache_clear()
    keys.published_keys.cache_clear()


def verified(token: str, jwks: dict, *, audience: str) -> dict:
    """What an app does: pick the key by its kid from the published set, check everything."""
    key_set = jwt.PyJWKSet.from_dict(jwks)
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(key for key in key_set.keys if key.key_id == kid)
    return jwt.decode(
        token,
        key.key,
        algorithms=["ES256", "RS256"],
        audience=audience,
        options={"require": ["exp", "iat", "sub", "aud"]},
    )


def test_an_app_verifies_who_is_asking_with_the_published_keys(signing, anon, user):
    signing(pem(ec.generate_private_key(ec.SECP256R1())))
    user.groups.add(Group.objects.create(name="finance"), Group.objects.create(name="audit"))

    response = anon.get("/.well-known/workgate-jwks.json")
    claims = verified(
        assertion_for(user, workspace_id="ws-wiki"), response.json(), audience="ws-wiki"
    )

    assert response.status_code == 200
    assert response["Cache-Control"] == "public, max-age=300"
    [published] = response.json()["keys"]
    assert (published["kty"], published["crv"], published["alg"]) == ("EC", "P-256", "ES256")
    assert "d" not in published  # the private part is never published
    assert (claims["sub"], claims["email"]) == (str(user.pk), user.email)
    assert claims["groups"] == ["audit", "finance"]
    assert claims["exp"] - claims["iat"] == 60


def test_an_assertion_for_one_workspace_is_refused_by_another(signing, anon, user):
    signing(pem(ec.generate_private_key(ec.SECP256R1())))
    token = assertion_for(user, workspace_id="ws-wiki")

    with pytest.raises(jwt.InvalidAudienceError):
        verified(token, anon.get("/.well-known/workgate-jwks.json").json(), audience="ws-crm")


def test_an_assertion_is_good_for_a_minute(signing, anon, user):
    signing(pem(ec.generate_private_key(ec.SECP256R1())))
    token = assertion_for(user, workspace_id="ws-wiki", now=timezone.now() - timedelta(seconds=61))

    with pytest.raises(jwt.ExpiredSignatureError):
        verified(token, anon.get("/.well-known/workgate-jwks.json").json(), audience="ws-wiki")


def test_while_keys_rotate_both_are_published_and_the_new_one_signs(signing, anon, user):
    old = pem(ec.generate_private_key(ec.SECP256R1()))
    new = pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    signing(new, previous=old)

    token = assertion_for(user, workspace_id="ws-wiki")
    published = anon.get("/.well-known/workgate-jwks.json").json()

    assert [key["alg"] for key in published["keys"]] == ["RS256", "ES256"]
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    assert verified(token, published, audience="ws-wiki")["sub"] == str(user.pk)


@pytest.mark.parametrize(
    "key",
    [
        "not a key",
        pem(ec.generate_private_key(ec.SECP384R1())),
        pem(rsa.generate_private_key(public_exponent=65537, key_size=1024)),  # noqa: S505
    ],
    ids=["not PEM", "P-384", "RSA 1024"],
)
def test_a_key_that_cannot_sign_assertions_is_refused_naming_the_setting(signing, key):
    signing(key)

    with pytest.raises(ImproperlyConfigured, match="WORKGATE_APP_SIGNING_KEY"):
        keys.signing_key()


def test_without_a_key_nothing_is_asserted_and_nothing_published(signing, anon, user):
    signing("")

    with pytest.raises(NoSigningKey):
        assertion_for(user, workspace_id="ws-wiki")
    assert anon.get("/.well-known/workgate-jwks.json").json() == {"keys": []}


def test_a_gateway_with_an_apps_domain_does_not_start_without_a_signing_key():
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("WORKGATE_APP")},
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PYTHONPATH": str(ROOT),
        "DEBUG": "0",
        "WORKGATE_APPS_DOMAIN": "apps.example.com",
    }

    started = import_fresh("config.asgi", env)

    assert started.returncode != 0
    assert "WORKGATE_APP_SIGNING_KEY (or _FILE) is required with WORKGATE_APPS_DOMAIN" in (
        started.stderr
    )
