from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.renderers import OpenApiJsonRenderer, OpenApiJsonRenderer2
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from accounts.views import admin_login, admin_logout, admin_password_change
from app_proxy.views import jwks_view
from config.views import api_not_found

handler400 = "config.views.bad_request"
handler403 = "config.views.permission_denied"
handler404 = "config.views.page_not_found"
handler500 = "config.views.server_error"

admin.site.site_header = "Workgate administration"
admin.site.site_title = "Workgate administration"
admin.site.index_title = "Workgate"
admin.site.login = admin_login  # one sign-in page for everyone, with its TOTP step
admin.site.logout = admin_logout  # and one audited sign-out
admin.site.password_change = admin_password_change  # audited

# The JSON documents answer `Accept: application/json` too (as application/json), which is what
# Postman, openapi-generator and LangChain's OpenAPI toolkit send; no Accept, */* and
# application/vnd.oai.openapi+json get the OpenAPI media type.
JSON_DOCUMENT = [OpenApiJsonRenderer, OpenApiJsonRenderer2]

api_patterns = [
    path("auth/", include("accounts.urls")),
    path("", include("workspaces.urls")),
    path("", include("sessions_app.urls")),
    path("", include("app_proxy.urls")),  # ahead of vnc_proxy's agents super gate
    path("", include("vnc_proxy.urls")),
    path("", include("audit.urls")),
    path("", include("streaming.urls")),
    path("schema", SpectacularAPIView.as_view(), name="schema"),
    path(
        "rt-docs.json",
        SpectacularAPIView.as_view(
            renderer_classes=JSON_DOCUMENT,
            custom_settings={
                "TITLE": "Workgate runtime API",
                "PREPROCESSING_HOOKS": ["core.schema.runtime_endpoints"],
            },
        ),
        name="schema-runtime",
    ),
    path(
        "admin-docs.json",
        SpectacularAPIView.as_view(
            renderer_classes=JSON_DOCUMENT,
            custom_settings={
                "TITLE": "Workgate administrator API",
                "PREPROCESSING_HOOKS": ["core.schema.admin_endpoints"],
            },
        ),
        name="schema-admin",
    ),
    # The split view serves Swagger UI's start-up script as a file: no inline script (CSP).
    path("docs", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="swagger-ui"),
    re_path(r"^.*$", api_not_found),
]

urlpatterns = [
    path("api/", include(api_patterns)),
    # The public keys of the identity assertions web apps receive (app_proxy/keys.py).
    path(".well-known/workgate-jwks.json", jwks_view, name="app-jwks"),
    path("admin/", admin.site.urls),
    path("", include("config.pages")),
]
