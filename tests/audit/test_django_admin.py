"""Audit entries in the Django admin: searchable and filterable, never added, changed or deleted."""

from __future__ import annotations

import pytest
from django.db import transaction

from audit import services as audit
from audit.models import AuditEntry

pytestmark = pytest.mark.django_db


@pytest.fixture
def entry(user):
    with transaction.atomic():
        return audit.record(action="launch_workspace", actor=user, resource="workspace:ws-x")


def test_the_audit_list_filters_and_searches(site, entry):
    for query in ("", "?action=launch_workspace", "?success__exact=1", "?q=alice"):
        response = site.get(f"/admin/audit/auditentry/{query}")
        assert response.status_code == 200
        assert b"workspace:ws-x" in response.content


def test_an_entry_can_be_viewed_but_not_added_changed_or_deleted(site, entry):
    page = site.get(f"/admin/audit/auditentry/{entry.pk}/change/")

    assert page.status_code == 200
    assert b'name="_save"' not in page.content
    assert site.get("/admin/audit/auditentry/add/").status_code == 403
    url = f"/admin/audit/auditentry/{entry.pk}"
    assert site.post(f"{url}/delete/", {"post": "yes"}).status_code == 403
    assert site.post(f"{url}/change/", {"action": "nothing"}).status_code == 403
    assert AuditEntry.objects.get(pk=entry.pk).action == "launch_workspace"
