"""The one error shape: {"success": false, "detail": "...", "code": "..."} (+ "errors" on 400)."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.views import exception_handler


class APIError(exceptions.APIException):
    """An error with a machine code of the caller's: `APIError(409, "Not ready.", "not_ready")`."""

    def __init__(self, status_code: int, detail: str, code: str):
        self.status_code = status_code
        super().__init__(detail=detail, code=code)


class NotFound(APIError):
    def __init__(self, detail: str = "Not found.", code: str = "not_found"):
        super().__init__(status.HTTP_404_NOT_FOUND, detail, code)


class Conflict(APIError):
    def __init__(self, detail: str, code: str = "conflict"):
        super().__init__(status.HTTP_409_CONFLICT, detail, code)


class Forbidden(APIError):
    def __init__(self, detail: str, code: str = "permission_denied"):
        super().__init__(status.HTTP_403_FORBIDDEN, detail, code)


def _first_message(errors) -> tuple[str, str]:
    """The first field and message of a nested DRF error structure."""
    if isinstance(errors, dict):
        for field, value in errors.items():
            inner_field, message = _first_message(value)
            return (f"{field}.{inner_field}" if inner_field else str(field)), message
    if isinstance(errors, list) and errors:
        return _first_message(errors[0])
    return "", str(errors)


def _code_of(detail) -> str:
    if isinstance(detail, dict):
        detail = next(iter(detail.values()), "")
    if isinstance(detail, list):
        detail = detail[0] if detail else ""
    return getattr(detail, "code", None) or "error"


def error_body(detail: str, code: str, errors=None) -> dict:
    body = {"success": False, "detail": detail, "code": code}
    if errors is not None:
        body["errors"] = errors
    return body


def api_exception_handler(exc, context):
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()

    response = exception_handler(exc, context)
    if response is None:
        return None  # an unexpected error: Django's handler500 answers (config.views.server_error)

    if isinstance(exc, exceptions.ValidationError):
        errors = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        field, message = _first_message(errors)
        detail = f"{field}: {message}" if field and field != "non_field_errors" else message
        response.data = error_body(detail, "invalid", errors)
        return response

    detail = exc.detail
    if isinstance(detail, dict):
        # simplejwt's InvalidToken carries {"detail", "code", "messages"}: keep sentence and code.
        code = str(detail.get("code") or _code_of(detail))
        message = str(detail.get("detail") or _first_message(detail)[1])
    elif isinstance(detail, list):
        code, message = _code_of(detail), _first_message(detail)[1]
    else:
        code, message = getattr(detail, "code", None) or "error", str(detail)
    if isinstance(exc, exceptions.Throttled):
        code = "rate_limited"
    response.data = error_body(message, code)
    return response


def json_error(status_code: int, detail: str, code: str, **headers) -> JsonResponse:
    response = JsonResponse(error_body(detail, code), status=status_code)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response
