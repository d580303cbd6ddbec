"""The generated OpenAPI document is the contract. Every constraint it declares on a request is
enforced with a 400 in the one error shape naming the field; a request without credentials is a
401 and an id that names nothing a 404; a refused request writes nothing but its audit entry.

Values are derived from the document itself (each declared type, length, pattern, range, choice,
item count and format, plus a NUL character in every string), so a route or field added later is
covered without a line here; only a valid example body per route is written by hand.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator

import pytest
from django.apps import apps
from django.core.cache import cache

from tests.support.contract import document, operations
from tests.support.errors import assert_error_shape
from tests.support.signin import PASSWORD
from tests.support.workspaces import make_web_workspace

pytestmark = pytest.mark.django_db(transaction=True)

DOCUMENT = document()

# A valid body for each route that takes one: each violation changes exactly one field of it.
VALID_BODIES = {
    ("post", "/api/agents/workspace/app-ticket"): {"workspaceId": "a1b2c3d4"},
    ("post", "/api/agents/workspace/ticket"): {"workspaceId": "a1b2c3d4"},
    ("post", "/api/ai/personal-stream/qanda-stream"): {"inputs": ["What is running?"]},
    ("post", "/api/ai/personal/qanda"): {"inputs": ["What is running?"]},
    ("post", "/api/auth/mfa/setup"): {"password": PASSWORD},
    ("post", "/api/auth/mfa/verify"): {"otp": "123456"},
    ("post", "/api/auth/refresh"): {"refresh": "not-yet-a-token"},
    ("post", "/api/auth/signin"): {"email": "root@example.com", "password": PASSWORD},
    ("post", "/api/workspaces"): {"name": "Wiki", "type": "web", "description": "The wiki"},
    ("put", "/api/workspaces/{workspace_id}"): {"name": "Wiki"},
    ("patch", "/api/workspaces/{workspace_id}"): {"name": "Wiki"},
}

# What a path parameter may be instead of an id: none of them names a row.
HOSTILE_IDS = ("a%00b", "x" * 300, "..%2F..%2Fadmin", "%20", "1%27%20OR%20%271%27%3D%271", "-1")


def resolve(schema: dict) -> dict:
    """The schema itself, with a `$ref` (or a single-member allOf, drf-spectacular's way of
    making a reference nullable) followed."""
    if "$ref" in schema:
        return DOCUMENT["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    if len(schema.get("allOf", ())) == 1:
        return {**resolve(schema["allOf"][0]), "nullable": schema.get("nullable", False)}
    return schema


def request_schema(operation: dict) -> dict | None:
    content = operation.get("requestBody", {}).get("content", {})
    return resolve(content["application/json"]["schema"]) if content else None


def breaking(pattern: str) -> str:
    """A string that does not match `pattern`."""
    for candidate in ("!", "~~", " x", "x" * 80):
        if not re.search(pattern, candidate):
            return candidate
    raise AssertionError(f"no breaking value for {pattern}")


def violations(schema: dict, *, in_query: bool = False) -> Iterator[tuple[str, object]]:
    """(what is wrong, value) for every constraint `schema` declares. In a query string every
    value is text, so only the violations that text can carry are made."""
    schema = resolve(schema)
    kind = schema.get("type")
    if not in_query and not schema.get("nullable"):
        yield "null", None
    if "enum" in schema:
        yield "not a choice", "not-a-choice"
    if kind == "string":
        if not in_query:
            yield "an object", {}
            yield "a list", []
            yield "a boolean", True
        if "maxLength" in schema:
            yield "too long", "x" * (schema["maxLength"] + 1)
        if schema.get("minLength", 0) >= 1:
            yield "empty", ""
        if "pattern" in schema:
            yield "not matching its pattern", breaking(schema["pattern"])
        if schema.get("format") == "uuid":
            yield "not a UUID", "not-a-uuid"
        if schema.get("format") == "date-time":
            yield "not a date", "not-a-date"
        yield "a NUL character", "a\x00b"
    elif kind == "integer":
        yield "not a number", "x"
        yield "a fraction", "1.5" if in_query else 1.5
        if "minimum" in schema:
            yield "below its minimum", str(schema["minimum"] - 1)
        if "maximum" in schema:
            yield "above its maximum", str(schema["maximum"] + 1)
    elif kind == "boolean":
        yield "not a boolean", "maybe"
    elif kind == "array":
        yield "a string", "x"
        yield "an object", {}
        if "maxItems" in schema:
            yield "too many items", ["x"] * (schema["maxItems"] + 1)
        for label, item in violations(schema["items"]):
            yield f"an item {label}", [item]
    elif kind == "object":
        yield "a string", "x"
        yield "a list", []
        for name, member in schema.get("properties", {}).items():
            for label, value in violations(member):
                yield f"{name} {label}", {name: value}


def body_violations(method: str, path: str, operation: dict) -> Iterator[tuple[str, object, str]]:
    """(what is wrong, body, the field the error must name) for one route."""
    schema = request_schema(operation)
    valid = VALID_BODIES[method, path]
    yield "not JSON", "{inputs", ""
    yield "a JSON list", [valid], ""
    for name, member in schema["properties"].items():
        for label, value in violations(member):
            yield f"{name}: {label}", {**valid, name: value}, name


def everything() -> dict[str, list]:
    """Every row of every table."""
    return {
        model._meta.label: list(model._default_manager.order_by("pk").values())
        for model in apps.get_models()
        if model._meta.managed and not model._meta.proxy
    }


def assert_only_refusals_written(before: dict[str, list]) -> None:
    """What a refused request may leave behind: nothing, except the audit entry that records a
    refusal (a launch refused, say), appended to the chain."""
    after = everything()
    entries_before = before.pop("audit.AuditEntry")
    entries_after = after.pop("audit.AuditEntry")
    assert after == before
    assert entries_after[: len(entries_before)] == entries_before
    assert all(entry["success"] is False for entry in entries_after[len(entries_before) :])


def check(broken: list[str], label: str, response, status: int, field: str = "") -> None:
    """Note in `broken` how `response` differs from a refusal with `status` naming `field`."""
    try:
        assert_error_shape(response, status, field=field)
    except AssertionError as error:
        broken.append(f"{label}: {error}")


@pytest.fixture
def caller(client_for, superuser):
    """A superuser who has given the one-time code: no permission, MFA rule or missing row
    stands in front of validation, so what refuses a request is the contract."""
    client = client_for(superuser, mfa=True)
    client.raise_request_exception = False  # a crash is a 500 to report, like any other answer
    return client


@pytest.fixture
def concrete(transactional_db):
    """A path with its parameters filled by a row that exists (or, for a session or a turn,
    an id of the right form)."""
    workspace = make_web_workspace()

    def fill(path: str) -> str:
        values = {"workspace_id": workspace.id, "session_id": uuid.uuid4(), "history_id": 1}
        return re.sub(r"\{([^}]+)\}", lambda name: str(values[name[1]]), path)

    return fill


def test_the_document_checked_here_is_the_one_served(anon):
    assert anon.get("/api/schema?format=json").json() == json.loads(json.dumps(DOCUMENT))


def test_every_route_that_takes_a_body_has_a_valid_example_here():
    takes_a_body = {(m, p) for m, p, operation in operations(DOCUMENT) if request_schema(operation)}
    assert takes_a_body == set(VALID_BODIES)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        (method, path)
        for method, path, operation in operations(DOCUMENT)
        if request_schema(operation)
    ],
)
def test_a_body_that_breaks_the_contract_is_a_400_naming_the_field(caller, concrete, method, path):
    operation = DOCUMENT["paths"][path][method]
    before = everything()
    broken = []
    for label, body, field in body_violations(method, path, operation):
        cache.clear()  # the rate limits count every request; this is not about them
        payload = body if isinstance(body, str) else json.dumps(body)
        response = getattr(caller, method)(concrete(path), payload, content_type="application/json")
        check(broken, label, response, 400, field)
    assert not broken, "\n".join(broken)
    assert_only_refusals_written(before)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        (method, path)
        for method, path, operation in operations(DOCUMENT)
        if any(parameter["in"] == "query" for parameter in operation.get("parameters", ()))
    ],
)
def test_a_query_parameter_that_breaks_the_contract_is_a_400_naming_it(
    caller, concrete, method, path
):
    operation = DOCUMENT["paths"][path][method]
    before = everything()
    broken = []
    for parameter in operation["parameters"]:
        if parameter["in"] != "query":
            continue
        name = parameter["name"]
        for label, value in violations(parameter["schema"], in_query=True):
            cache.clear()
            response = getattr(caller, method)(concrete(path), {name: value})
            check(broken, f"{name} {label}", response, 400, name)
    assert not broken, "\n".join(broken)
    assert_only_refusals_written(before)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        (method, path)
        for method, path, operation in operations(DOCUMENT)
        if operation["security"] != [{}]
    ],
)
def test_a_request_without_credentials_is_a_401_and_changes_nothing(anon, concrete, method, path):
    anon.raise_request_exception = False
    before = everything()
    body = VALID_BODIES.get((method, path))
    response = getattr(anon, method)(concrete(path), body, format="json")

    assert_error_shape(response, 401, "not_authenticated")
    assert_only_refusals_written(before)


@pytest.mark.parametrize(
    ("method", "path"),
    [(method, path) for method, path, operation in operations(DOCUMENT) if "{" in path],
)
def test_an_id_that_names_nothing_is_a_404(caller, concrete, method, path):
    before = everything()
    broken = []
    for hostile in HOSTILE_IDS:
        cache.clear()
        url = re.sub(r"\{[^}]+\}", hostile, path)
        response = getattr(caller, method)(url, VALID_BODIES.get((method, path)), format="json")
        check(broken, hostile, response, 404)
    assert not broken, "\n".join(broken)
    assert_only_refusals_written(before)
