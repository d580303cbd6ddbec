"""JSON answers for what no API view handles: unknown /api/ paths and server errors."""

from __future__ import annotations

from django.shortcuts import render

from config.exceptions import json_error


def api_not_found(request, *args, **kwargs):
    return json_error(404, "Not found.", "not_found")


def page_not_found(request, exception=None):
    if request.path.startswith("/api/"):
        return api_not_found(request)
    return render(request, "404.html", status=404)


def server_error(request):
    # No stack trace and no exception text: the details go to the server log only.
    if request.path.startswith("/api/"):
        return json_error(500, "Internal server error.", "server_error")
    return render(request, "500.html", status=500)
