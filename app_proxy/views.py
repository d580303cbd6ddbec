"""The public keys of identity assertions, for the apps behind the gateway to fetch."""

from __future__ import annotations

from django.http import JsonResponse
from django.views.decorators.http import require_GET

from app_proxy.keys import jwks

# Apps cache the set; a rotation publishes the next key beside the current one for longer.
MAX_AGE_SECONDS = 300


@require_GET
def jwks_view(request):
    response = JsonResponse(jwks())
    response["Cache-Control"] = f"public, max-age={MAX_AGE_SECONDS}"
    return response
