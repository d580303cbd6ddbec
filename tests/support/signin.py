"""Sign-ins sent all at once, as a botnet would send them: one per address, released together."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from django.db import connection
from rest_framework.test import APIClient


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
