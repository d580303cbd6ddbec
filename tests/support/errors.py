"""The one error shape every API refusal has: {success: false, detail, code} (+ errors)."""

from __future__ import annotations


def assert_error_shape(response, status: int, code: str | None = None, *, field: str = "") -> dict:
    """`field`: a validation error must name it under `errors`."""
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["success"] is False
    assert isinstance(body["detail"], str) and body["detail"]
    assert isinstance(body["code"], str) and body["code"]
    if code:
        assert body["code"] == code
    if field:
        assert field in body["errors"], body
    return body
