"""The audit log page for administrators: filters, pages, and the CSV download of the API."""

from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.shortcuts import render
from django.utils import timezone

from audit.models import AuditEntry
from audit.selectors import audit_entry_list
from core.permissions import admin_may

PAGE_SIZE = 50
SUCCESS_CHOICES = {"": None, "true": True, "false": False}


def _day(value: str) -> date | None:
    """A day from the filter form; None when blank or not a day. The first and the last day a
    date can name are not days either: the edges of a day in the server's time zone must stay
    within what a datetime holds."""
    try:
        day = date.fromisoformat(value)
    except ValueError:
        return None
    return day if date.min < day < date.max else None


@login_required
def audit_page(request):
    if not admin_may(request.user, "audit.view_auditentry"):
        raise PermissionDenied("Admin access required")
    filters = {
        "action": request.GET.get("action", "").strip(),
        "user": request.GET.get("user", "").strip(),
        "resource": request.GET.get("resource", "").strip()[:200],
        "success": request.GET.get("success", "")
        if request.GET.get("success") in SUCCESS_CHOICES
        else "",
        "since": request.GET.get("since", ""),
        "until": request.GET.get("until", ""),
    }
    # Whole days in the server's time zone: "until" includes the entries of that day.
    since_day, until_day = _day(filters["since"]), _day(filters["until"])
    tz = timezone.get_current_timezone()
    since = datetime.combine(since_day, time.min, tz) if since_day else None
    until = (
        datetime.combine(until_day + timedelta(days=1), time.min, tz) - timedelta(microseconds=1)
        if until_day
        else None
    )
    entries = audit_entry_list(
        user=request.user,
        action=filters["action"] or None,
        actor=filters["user"] or None,
        resource=filters["resource"] or None,
        success=SUCCESS_CHOICES[filters["success"]],
        since=since,
        until=until,
    )
    page = Paginator(entries, PAGE_SIZE).get_page(request.GET.get("page"))
    page.object_list = list(page.object_list)
    for entry in page.object_list:
        entry.details_json = json.dumps(entry.details, ensure_ascii=False, sort_keys=True)
    api_query = {
        key: value
        for key, value in {
            "action": filters["action"],
            "user": filters["user"],
            "resource": filters["resource"],
            "success": filters["success"],
            "since": since.isoformat() if since else "",
            "until": until.isoformat() if until else "",
        }.items()
        if value
    }
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "audit/audit.html",
        {
            "page": page,
            "filters": filters,
            "actions": AuditEntry.objects.order_by("action")
            .values_list("action", flat=True)
            .distinct(),
            "csv_url": "/api/audit-logs?" + urlencode({**api_query, "format": "csv"}),
            "query": query.urlencode(),
        },
    )
