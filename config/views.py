"""JSON answers for what no API view handles under /api/: unknown paths, requests Django refuses
before any view runs (a body over DATA_UPLOAD_MAX_MEMORY_SIZE, too many fields, a host not in
ALLOWED_HOSTS) and server errors. Pages keep Django's own answers."""

from __future__ import annotations

from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.shortcuts import render
from django.views import defaults

from core.exceptions import json_error


def api_not_found(request, *args, **kwargs):
    return json_error(404, "Not found.", "not_found")


_REFUSED_BEFORE_ANY_VIEW = {
    RequestDataTooBig: ("The request body is too large.", "too_large"),
    TooManyFieldsSent: ("The request has too many fields.", "too_many_fields"),
}


def bad_request(request, exception=None):
    if request.path.startswith("/api/"):
        detail, code = _REFUSED_BEFORE_ANY_VIEW.get(
            type(exception), ("Bad request.", "bad_request")
        )
        return json_error(400, detail, code)
    return defaults.bad_request(request, exception)


def permission_denied(request, exception=None):
    if request.path.startswith("/api/"):
        return json_error(
            403, "You do not have permission to perform this action.", "permission_denied"
        )
    return defaults.permission_denied(request, exception)


def page_not_found(request, exception=None):
    if request.path.startswith("/api/"):
        return api_not_found(request)
    return render(request, "404.html", status=404)


def server_error(request):
    # No stack trace and no exception text: the details go to the server log only.
    if request.path.startswith("/api/"):
        return json_error(500, "Internal server error.", "server_error")
    return render(request, "500.html", status=500)
