"""OpenAPI: security schemes and the runtime / admin split of the generated documents.

Every API view says who it is for with an `audience` attribute: "runtime" (end users and API
clients), "admin", or a mapping from HTTP method to one of those, or a set of both.
"""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension

RUNTIME = "runtime"
ADMIN = "admin"


class AccessTokenScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.AccessTokenAuthentication"
    name = "accessToken"

    def get_security_definition(self, auto_schema):
        return SECURITY_SCHEMES["accessToken"]


SECURITY_SCHEMES = {
    "accessToken": {
        "type": "apiKey",
        "in": "header",
        "name": "x-access-token",
        "description": "The access token from POST /api/auth/signin.",
    },
    "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "The same access token as `Authorization: Bearer <jwt>`.",
    },
}


def audiences_of(callback, method: str) -> set[str]:
    view = getattr(callback, "cls", None)
    audience = getattr(view, "audience", RUNTIME)
    if isinstance(audience, dict):
        audience = audience.get(method.upper(), RUNTIME)
    if isinstance(audience, str):
        return {audience}
    return set(audience)


def _only(audience: str):
    def hook(endpoints, **kwargs):
        return [
            (path, regex, method, callback)
            for path, regex, method, callback in endpoints
            if audience in audiences_of(callback, method)
        ]

    return hook


runtime_endpoints = _only(RUNTIME)
admin_endpoints = _only(ADMIN)


def add_bearer_alternative(result, generator, request, public):
    """Declare both schemes, and wherever x-access-token is accepted, say a bearer header is too."""
    components = result.setdefault("components", {}).setdefault("securitySchemes", {})
    components.update(SECURITY_SCHEMES)
    for path in result.get("paths", {}).values():
        for operation in path.values():
            security = operation.get("security")
            if security and {"accessToken": []} in security and {"bearerAuth": []} not in security:
                security.insert(security.index({"accessToken": []}) + 1, {"bearerAuth": []})
    return result
