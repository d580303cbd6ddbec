"""Hostile input to the audit log: odd filter values and addresses the chain must survive."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from audit import services as audit
from audit.models import AuditEntry
from audit.selectors import audit_chain_first_break
from core.network import Origin

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("value", ["²", "١٢", "٣"])
def test_a_user_filter_of_non_ascii_digits_is_an_email_filter_not_a_server_error(admin_api, value):
    response = admin_api.get("/api/audit-logs", {"user": value})

    assert response.status_code == 200
    assert response.json()["count"] == 0


@pytest.mark.parametrize(
    "written, stored",
    [
        ("2001:DB8:0:0::1", "2001:db8::1"),
        ("2001:0db8::0001", "2001:db8::1"),
        ("::ffff:10.1.2.3", "::ffff:10.1.2.3"),
    ],
)
def test_an_ipv6_address_in_any_spelling_keeps_the_chain_verifiable(written, stored):
    audit.record(action="login", origin=Origin(ip=written))

    assert AuditEntry.objects.get().ip_address == stored
    assert audit_chain_first_break() is None
    call_command("verify_audit")  # exits non-zero on a break
