from __future__ import annotations

import json
import re

import pytest
from django.urls import resolve

from core.schema import ADMIN, RUNTIME, audiences_of
from tests.support.contract import operations

pytestmark = pytest.mark.django_db


def paths_and_methods(document) -> set[tuple[str, str]]:
    return {(path, method) for method, path, _operation in operations(document)}


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x-1", path)


@pytest.fixture
def documents(anon):
    full = anon.get("/api/schema?format=json")
    runtime = anon.get("/api/rt-docs.json")
    admin = anon.get("/api/admin-docs.json")
    for response in (full, runtime, admin):
        assert response.status_code == 200
        assert response["Content-Type"].startswith("application/vnd.oai.openapi+json")
    return full.json(), runtime.json(), admin.json()


def test_the_full_document_declares_both_token_schemes(documents):
    full = documents[0]
    for document in documents:
        schemes = document["components"]["securitySchemes"]
        assert schemes["accessToken"] == {
            "type": "apiKey",
            "in": "header",
            "name": "x-access-token",
            "description": "The access token from POST /api/auth/signin.",
        }
        assert schemes["bearerAuth"]["scheme"] == "bearer"
    me = full["paths"]["/api/auth/me"]["get"]
    assert {"accessToken": []} in me["security"] and {"bearerAuth": []} in me["security"]


def test_the_runtime_and_admin_documents_split_the_full_one_by_audience(documents):
    full, runtime, admin = documents
    runtime_ops = paths_and_methods(runtime)
    admin_ops = paths_and_methods(admin)
    assert ("/api/auth/signin", "post") in runtime_ops
    assert ("/api/auth/signin", "post") not in admin_ops
    for path, method in paths_and_methods(full):
        audiences = audiences_of(resolve(concrete(path)).func, method)
        assert ((path, method) in runtime_ops) == (RUNTIME in audiences), (path, method)
        assert ((path, method) in admin_ops) == (ADMIN in audiences), (path, method)
    assert runtime_ops | admin_ops == paths_and_methods(full)


def test_the_schema_is_yaml_by_default_and_swagger_ui_is_served(anon):
    assert anon.get("/api/schema").content.startswith(b"openapi: 3")
    page = anon.get("/api/docs")
    assert page.status_code == 200
    assert b"swagger-ui" in page.content
    assert b"cdn.jsdelivr" not in page.content  # served locally, works offline


def test_swagger_ui_does_not_keep_a_pasted_token_after_its_tab_is_closed(anon):
    """Persisted, the token would stay in localStorage for any script of the origin to read."""
    script = anon.get("/api/docs", {"script": ""}).content.decode()

    settings = json.loads(re.search(r"const swaggerSettings = (\{.*?\});", script, re.S).group(1))

    assert settings["persistAuthorization"] is False


@pytest.mark.parametrize(
    "url", ["/api/rt-docs.json", "/api/admin-docs.json", "/api/schema?format=json"]
)
@pytest.mark.parametrize(
    ("accept", "media_type"),
    [
        ("application/json", "application/json"),  # Postman, openapi-generator, LangChain, curl
        ("application/vnd.oai.openapi+json", "application/vnd.oai.openapi+json"),
        ("*/*", "application/vnd.oai.openapi+json"),
        (None, "application/vnd.oai.openapi+json"),
    ],
)
def test_the_json_documents_are_served_to_json_clients(anon, url, accept, media_type):
    headers = {} if accept is None else {"HTTP_ACCEPT": accept}

    response = anon.get(url, **headers)

    assert response.status_code == 200
    assert response["Content-Type"].split(";")[0] == media_type
    document = json.loads(response.content)
    assert document["openapi"].startswith("3.")
    assert document["paths"]
