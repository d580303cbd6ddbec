"""X-Forwarded-For from a trusted proxy is believed only as far as it names real addresses."""

from __future__ import annotations

import ipaddress

import pytest
from django.test import override_settings

from audit.models import AuditEntry
from core.network import resolve_client

LOOPBACK_PROXY = [ipaddress.ip_network("127.0.0.0/8")]


@override_settings(WORKGATE_TRUSTED_PROXIES=LOOPBACK_PROXY)
@pytest.mark.parametrize("forwarded_for", ["garbage", "1.2.3.4:5678", "garbage, 127.0.0.2"])
def test_a_hop_that_is_not_an_address_ends_the_walk_at_the_last_known_address(forwarded_for):
    client = resolve_client("127.0.0.1", forwarded_for, "", "http")

    assert client.ip in ("127.0.0.1", "127.0.0.2")


@override_settings(WORKGATE_TRUSTED_PROXIES=LOOPBACK_PROXY)
def test_a_real_client_behind_the_proxy_is_still_found():
    assert resolve_client("127.0.0.1", "garbage, 203.0.113.9", "", "http").ip == "203.0.113.9"


@override_settings(WORKGATE_TRUSTED_PROXIES=LOOPBACK_PROXY)
@pytest.mark.django_db
def test_a_sign_in_through_a_proxy_forwarding_garbage_is_answered_and_audited(anon):
    response = anon.post(
        "/api/auth/signin",
        {"email": "nobody@example.com", "password": "wrong"},
        format="json",
        REMOTE_ADDR="127.0.0.1",
        HTTP_X_FORWARDED_FOR="garbage",
    )

    assert response.status_code == 401
    assert AuditEntry.objects.get().ip_address == "127.0.0.1"
