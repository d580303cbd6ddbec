"""The suite-wide check that every API response is one the OpenAPI document declares.

After every response a test client receives from an /api/ route, the operation is found in the
generated document by method and path; the status must be one it lists, and a JSON body must
validate against the schema listed for that status (OpenAPI 3.0's `nullable` read as JSON
Schema's null type). A route the document does not describe answers nothing to check.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import cache

from jsonschema import Draft202012Validator

METHODS = ("get", "post", "put", "patch", "delete")


@cache
def document() -> dict:
    """The full OpenAPI document, as drf-spectacular generates it for /api/schema."""
    from drf_spectacular.generators import SchemaGenerator

    return SchemaGenerator().get_schema(request=None, public=True)


def operations(spec: dict) -> Iterator[tuple[str, str, dict]]:
    """(method, path, operation) for every operation of an OpenAPI document."""
    for path, item in spec["paths"].items():
        for method in METHODS:
            if method in item:
                yield method, path, item[method]


def _json_schema(schema):
    """OpenAPI 3.0's schema dialect as JSON Schema: `nullable: true` admits null."""
    if isinstance(schema, list):
        return [_json_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    converted = {key: _json_schema(value) for key, value in schema.items() if key != "nullable"}
    if schema.get("nullable"):
        if "enum" in converted:
            converted["enum"] = [*converted["enum"], None]
        return {"anyOf": [converted, {"type": "null"}]}
    return converted


@cache
def _components() -> dict:
    return _json_schema(document()["components"])


@cache
def _operations() -> list[tuple[re.Pattern, str, dict]]:
    return [
        (
            re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path)) + "$"),
            method,
            operation,
        )
        for method, path, operation in operations(document())
    ]


def _operation_for(method: str, path: str) -> dict | None:
    for pattern, candidate, operation in _operations():
        if candidate == method and pattern.match(path):
            return operation
    return None


def requested(response) -> tuple[str, str]:
    """(method, path) of the request a test client's response answers: a WSGI environ for
    Client, an ASGI scope for AsyncClient."""
    request = getattr(response, "request", None) or {}
    method = request.get("REQUEST_METHOD") or request.get("method") or ""
    return method.lower(), request.get("PATH_INFO") or request.get("path") or ""


def response_violations(response) -> list[str]:
    method, path = requested(response)
    if not path.startswith("/api/"):
        return []
    operation = _operation_for(method, path)
    if operation is None or response.status_code == 405:
        return []  # no operation (405: a method the route does not have) to hold it to
    where = f"{method.upper()} {path} -> {response.status_code}"
    declared = operation.get("responses", {}).get(str(response.status_code))
    if declared is None:
        return [f"{where}: status not in the document ({sorted(operation['responses'])})"]
    content_type = response.get("Content-Type", "").split(";")[0]
    if content_type != "application/json" or getattr(response, "streaming", False):
        return []
    media = declared.get("content", {}).get("application/json")
    if media is None:
        return [f"{where}: JSON body, the document declares {sorted(declared.get('content', {}))}"]
    schema = {**_json_schema(media["schema"]), "components": _components()}
    body = json.loads(response.content)
    return [
        f"{where}: {'/'.join(map(str, error.absolute_path))}: {error.message[:200]}"
        for error in Draft202012Validator(schema).iter_errors(body)
    ]
