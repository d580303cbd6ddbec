"""Signing in as the tests do: the password every test user has, an access token minted directly,
a sign-in and a two-step enrolment through the API, and sign-ins sent all at once, as a botnet
would send them."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pyotp
from django.db import connection
from rest_framework.test import APIClient

from accounts.tokens import issue_tokens

PASSWORD = "correct horse battery staple"


def token_for(user, *, mfa: bool = False) -> str:
    return issue_tokens(user, mfa=mfa)["token"]


def sign_in(client, email, password=PASSWORD, **extra):
    return client.post(
        "/api/auth/signin", {"email": email, "password": password, **extra}, format="json"
    )


def enrol(api) -> str:
    """Turn on two-step sign-in for `api`'s user, as the person would; the TOTP secret."""
    setup = api.post("/api/auth/mfa/setup", {"password": PASSWORD}, format="json")
    assert setup.status_code == 200
    secret = setup.json()["secret"]
    verify = api.post("/api/auth/mfa/verify", {"otp": pyotp.TOTP(secret).now()}, format="json")
    assert verify.status_code == 200, verify.json()
    return secret


def sign_ins_at_once(body: dict, *, addresses: list[str]) -> Counter:
    """POST /api/auth/signin with `body` from each of `addresses`, all in flight together: how
    many were answered with each (status, code)."""
    barrier = threading.Barrier(len(addresses))

    def attempt(address: str) -> tuple[int, str]:
        try:
            barrier.wait()
            response = APIClient().post(
                "/api/auth/signin", body, format="json", REMOTE_ADDR=address
            )
            return response.status_code, response.json()["code"]
        finally:
            connection.close()

    with ThreadPoolExecutor(len(addresses)) as pool:
        return Counter(pool.map(attempt, addresses))
