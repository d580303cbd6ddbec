"""What the gateway's own log keeps of a request to a web app: Daphne's access line names the
path and the query's parameter names, never a value. An app's queries carry its own secrets
(OAuth codes, access tokens, signed download links) under names the gateway cannot know."""

from __future__ import annotations

import asyncio

import pytest

from tests.support import apps
from tests.support.database import orm

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


async def test_an_apps_query_values_reach_no_line_of_the_gateways_log(
    app_settings, app_gateway, httpbin_app, api
):
    runtime, cookie = await orm(lambda: apps.open_app(api, app_gateway, httpbin_app.url))
    secret = "oauth-code-5f0c2a9e"
    async with app_gateway.client(runtime, cookie) as client:
        response = await client.get("/get", params={"code": secret, "access_token": secret})
    assert response.status_code == 200
    assert response.json()["args"] == {"code": secret, "access_token": secret}  # the app got it

    line = "GET /get?code=[redacted]&access_token=[redacted]"
    for _ in range(200):  # Daphne writes its line just after the answer
        if line in (text := app_gateway.log.read_text(errors="replace")):
            break
        await asyncio.sleep(0.05)
    assert line in text
    assert secret not in text
