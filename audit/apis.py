from __future__ import annotations

import csv
import json
from collections.abc import AsyncIterator

from django.http import StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.views import APIView

from audit import serializers as s
from audit.selectors import audit_entry_list
from core.inputs import query_input
from core.pagination import PAGE_PARAMETERS, paginated
from core.schema import ADMIN, RUNTIME
from core.serializers import ErrorOutput

CSV_COLUMNS = (
    "id",
    "created_at",
    "actor_id",
    "actor_email",
    "action",
    "resource",
    "success",
    "ip_address",
    "user_agent",
    "details",
    "prev_hash",
    "hash",
)
# A spreadsheet runs a cell that starts with one of these as a formula.
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


class JSONOnly(BaseContentNegotiation):
    """`?format=csv` selects the CSV export in the view, not a DRF renderer; errors stay JSON."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None


class _Echo:
    def write(self, value: str) -> str:
        return value


def _cell(value) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_PREFIXES) else text


async def csv_rows(entries) -> AsyncIterator[str]:
    """The export, row by row as the database yields them. Asynchronous, because under ASGI
    Django serves a synchronous iterator by reading it whole into memory first."""
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_COLUMNS)
    async for entry in entries.aiterator(chunk_size=1000):
        yield writer.writerow(
            [
                entry.id,
                entry.created_at.isoformat(),
                entry.actor_id,
                _cell(entry.actor_email),
                _cell(entry.action),
                _cell(entry.resource),
                "true" if entry.success else "false",
                entry.ip_address or "",
                _cell(entry.user_agent),
                _cell(json.dumps(entry.details, sort_keys=True, ensure_ascii=False)),
                entry.prev_hash,
                entry.hash,
            ]
        )


class AuditLogListApi(APIView):
    audience = {RUNTIME, ADMIN}
    content_negotiation_class = JSONOnly

    @extend_schema(
        tags=["audit"],
        operation_id="audit_logs_list",
        parameters=[s.AuditFilterInput, *PAGE_PARAMETERS],
        responses={
            (200, "application/json"): s.AuditPage,
            (200, "text/csv"): OpenApiTypes.STR,
            400: ErrorOutput,
            401: ErrorOutput,
            404: ErrorOutput,
        },
        summary="The audit log, newest first (administrators: everything; others: their own)",
    )
    def get(self, request):
        options = dict(query_input(s.AuditFilterInput, request))
        export = options.pop("format") == "csv"
        entries = audit_entry_list(user=request.user, actor=options.pop("user", None), **options)
        if export:
            response = StreamingHttpResponse(csv_rows(entries), content_type="text/csv")
            stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
            response["Content-Disposition"] = f'attachment; filename="audit-{stamp}.csv"'
            return response
        return paginated(request, entries, s.AuditEntryOutput, view=self)
