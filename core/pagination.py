"""The page shape of list endpoints: {count, next, previous, results}; `?page=`, `?page_size=`."""

from __future__ import annotations

from rest_framework import serializers
from rest_framework.pagination import PageNumberPagination

from core.inputs import query_input


class Pagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class PageInput(serializers.Serializer):
    """Checked before the paginator reads them: it would answer 404 to `?page=x` and serve the
    default size for `?page_size=x`."""

    page = serializers.IntegerField(required=False, min_value=1, help_text="Page number, from 1.")
    page_size = serializers.IntegerField(
        required=False,
        min_value=1,
        help_text=f"Items per page (default {Pagination.page_size}; more than "
        f"{Pagination.max_page_size} is served as {Pagination.max_page_size}).",
    )


PAGE_PARAMETERS = [PageInput]


def paginated(request, queryset, serializer_class, *, view=None):
    """Render one page of `queryset` with `serializer_class` (400 for a page or size that is not
    a positive number, 404 for a page past the last)."""
    query_input(PageInput, request)
    paginator = Pagination()
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(serializer_class(page, many=True).data)
