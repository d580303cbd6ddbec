"""Grants: what an app-session cookie stands for, every request's admission (services.app_admit,
what the proxy calls), the per-process cache and the channel-layer messages that evict it, how
grants end, and their byte counts and audit."""

from __future__ import annotations

import asyncio
import time
import types

import jwt
import pytest
from django.db.models import F

from accounts.models import User
from accounts.services import user_sign_out_everywhere
from app_proxy import admission_cache, keys, services
from app_proxy.admission import AppRefused
from app_proxy.models import AppGrant
from audit.models import AuditEntry
from core.network import Origin
from sessions_app.models import WorkspaceSession
from sessions_app.services import EndReason, session_terminate
from tests.app_proxy.conftest import APP_ADDRESS, APP_HOST, ask_app_ticket, ticket_in
from tests.support.database import orm
from workspaces.models import Workspace

pytestmark = pytest.mark.django_db(transaction=True)


async def entered(api, runtime, *, mode="origin"):
    """A fresh app ticket through the API, spent as the app's door does: the Entry."""
    return await orm(_entered, api, runtime, mode)


def _entered(api, runtime, mode):
    response = ask_app_ticket(api, runtime.runtime_id)
    assert response.status_code == 200, response.content
    return services.enter(
        mode=mode,
        runtime_id=runtime.runtime_id,
        ticket=ticket_in(response.json()["appUrl"]),
        client_ip="127.0.0.1",
        user_agent="pytest-agent/1",
    )


@pytest.fixture
async def cache():
    """This test's loop's admission cache, closed (listener and groups) at its end."""
    cache = admission_cache.for_this_loop()
    yield cache
    await cache.close()


async def admit(runtime, cookie, *, mode="origin"):
    return await services.app_admit(mode=mode, runtime_id=runtime.runtime_id, cookie_value=cookie)


async def refusal(runtime, cookie, *, mode="origin") -> tuple[int, str]:
    with pytest.raises(AppRefused) as refused:
        await admit(runtime, cookie, mode=mode)
    return refused.value.status, refused.value.code


async def test_an_admission_carries_the_pinned_upstream_the_credential_and_an_assertion(
    api, user, web_app, app_runtime, cache
):
    entry = await entered(api, app_runtime)

    admission = await admit(app_runtime, entry.cookie_value)

    assert admission.grant_id == entry.admission.grant_id
    assert (admission.session_id, admission.runtime_id) == (app_runtime.id, app_runtime.runtime_id)
    assert (admission.workspace_id, admission.user_id, admission.mode) == (
        web_app.id,
        user.pk,
        "origin",
    )
    upstream = admission.upstream
    assert upstream.origin == f"https://{APP_HOST}:8443" and upstream.base_path == "/base"
    assert (upstream.address, upstream.port, upstream.tls_verify) == (APP_ADDRESS, 8443, True)
    assert upstream.credential_header == "Authorization"
    assert upstream.credential == "Bearer app-credential-0042"
    # What the app checks: the assertion, against the published keys, for this workspace.
    key = jwt.PyJWKSet.from_dict(keys.jwks()).keys[0]
    claims = jwt.decode(admission.assertion, key.key, algorithms=["ES256"], audience=web_app.id)
    assert (claims["sub"], claims["email"]) == (str(user.pk), user.email)
    assert claims["exp"] - claims["iat"] == 60
    # A hit: the same admission from memory, without the database.
    assert (
        cache.hit(mode="origin", runtime_id=app_runtime.runtime_id, cookie_value=entry.cookie_value)
        is admission
    )
    assert cache.listening


async def test_no_cookie_a_forged_one_and_another_apps_are_refused(
    api, user, web_app, app_runtime, cache
):
    entry = await entered(api, app_runtime)
    other = await orm(
        WorkspaceSession.objects.create,
        user=user,
        workspace=None,
        workspace_name="Other",
        workspace_type="web",
        status="ready",
        started_at=app_runtime.started_at,
        last_seen_at=app_runtime.started_at,
        provisioner="web",
        upstream_kind="http",
    )

    assert await refusal(app_runtime, None) == (401, "app_sign_in_required")
    assert await refusal(app_runtime, entry.cookie_value + "x") == (401, "app_sign_in_required")
    assert await refusal(app_runtime, services.grant_cookie("0" * 32)) == (
        401,
        "app_sign_in_required",
    )
    # Another app's door, before and after the cookie is in the cache.
    assert await refusal(other, entry.cookie_value) == (403, "app_wrong_origin")
    await admit(app_runtime, entry.cookie_value)
    assert await refusal(other, entry.cookie_value) == (403, "app_wrong_origin")
    assert await refusal(app_runtime, entry.cookie_value, mode="prefix") == (
        403,
        "app_wrong_origin",
    )


async def test_stopping_the_session_evicts_the_cache_at_once_and_ends_the_grant(
    api, user, app_runtime, cache
):
    entry = await entered(api, app_runtime)
    await admit(app_runtime, entry.cookie_value)
    evictions = cache.evictions

    await orm(
        session_terminate,
        session=app_runtime,
        actor=user,
        reason=EndReason.USER_STOP,
        origin=Origin(ip="127.0.0.1"),
    )
    # The session's channel-layer message, through the suite's Redis: no sleeping, no TTL.
    await asyncio.wait_for(cache.evicted(evictions), timeout=10)

    assert entry.cookie_value not in cache.entries
    assert await refusal(app_runtime, entry.cookie_value) == (403, "app_grant_ended")
    grant = await orm(AppGrant.objects.get)
    assert grant.ended_at is not None and grant.end_reason == "user_stop"
    closed = await orm(lambda: list(AuditEntry.objects.filter(action="app_session_closed")))
    assert len(closed) == 1
    assert closed[0].actor_id == user.pk and closed[0].resource == f"session:{app_runtime.id}"
    assert closed[0].details["reason"] == "user_stop"


def sign_out_everywhere(user) -> None:
    user_sign_out_everywhere(user=user, actor=user, origin=Origin())


def set_a_new_password(user) -> None:
    user.set_password("a new passphrase, 43")
    user.save()


@pytest.mark.parametrize("signing_out", [sign_out_everywhere, set_a_new_password])
async def test_signing_out_everywhere_evicts_the_cache_and_ends_every_grant_of_the_account(
    api, user, app_runtime, cache, signing_out
):
    first, second = await entered(api, app_runtime), await entered(api, app_runtime)
    await admit(app_runtime, first.cookie_value)
    await admit(app_runtime, second.cookie_value)
    evictions = cache.evictions

    await orm(signing_out, await orm(User.objects.get, pk=user.pk))
    await asyncio.wait_for(cache.evicted(evictions), timeout=10)

    assert not cache.entries
    for entry in (first, second):
        assert await refusal(app_runtime, entry.cookie_value) == (403, "app_grant_ended")
    reasons = await orm(lambda: sorted(AppGrant.objects.values_list("end_reason", flat=True)))
    assert reasons == ["signed_out", "signed_out"]
    # The session itself goes on: only the account's sign-ins ended.
    assert (await orm(WorkspaceSession.objects.get)).status == "ready"
    signed_out = await orm(AuditEntry.objects.get, action="signed_out_everywhere")
    assert signed_out.details["desktop_passes_voided"] == 2


async def test_an_administrator_terminating_the_session_evicts_the_cache_too(
    api, user, admin_api, app_runtime, cache
):
    entry = await entered(api, app_runtime)
    await admit(app_runtime, entry.cookie_value)
    evictions = cache.evictions

    response = await orm(admin_api.post, f"/api/sessions/{app_runtime.id}/terminate")
    await asyncio.wait_for(cache.evicted(evictions), timeout=10)

    assert response.status_code == 200, response.content
    assert await refusal(app_runtime, entry.cookie_value) == (403, "app_grant_ended")
    grant = await orm(AppGrant.objects.get)
    assert grant.end_reason == "admin_terminate"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"is_active": False}, (403, "account_disabled")),
        ({"sign_in_epoch": F("sign_in_epoch") + 1}, (403, "signed_out")),
    ],
)
async def test_a_disabled_or_signed_out_account_is_refused_on_the_next_load(
    api, user, app_runtime, cache, change, expected
):
    """Changed behind the services' back (no message): the next load from the database refuses
    it, which is what the TTL fallback leads to when the channel layer is lost."""
    entry = await entered(api, app_runtime)
    await orm(User.objects.filter(pk=user.pk).update, **change)

    assert await refusal(app_runtime, entry.cookie_value) == expected


async def test_a_session_no_longer_ready_and_a_workspace_withdrawn_are_refused(
    api, user, web_app, app_runtime, cache
):
    entry = await entered(api, app_runtime)
    await orm(WorkspaceSession.objects.filter(pk=app_runtime.pk).update, status="error")
    assert await refusal(app_runtime, entry.cookie_value) == (404, "app_session_ended")

    await orm(WorkspaceSession.objects.filter(pk=app_runtime.pk).update, status="ready")
    await orm(Workspace.objects.filter(pk=web_app.pk).update, app_path_prefix_allowed=False)
    assert await refusal(app_runtime, entry.cookie_value, mode="prefix") == (
        403,
        "app_wrong_origin",
    )


async def test_an_entry_is_believed_only_briefly_while_the_channel_layer_cannot_be_heard(
    api, user, app_runtime, cache, monkeypatch
):
    entry = await entered(api, app_runtime)
    await admit(app_runtime, entry.cookie_value)
    cache.listening = False  # as after the listener lost Redis
    monkeypatch.setattr(admission_cache, "FALLBACK_TTL", 0.0)

    assert (
        cache.hit(mode="origin", runtime_id=app_runtime.runtime_id, cookie_value=entry.cookie_value)
        is None
    )


async def test_after_losing_the_channel_layer_the_cache_listens_again_and_starts_afresh(
    api, user, app_runtime, cache, monkeypatch
):
    entry = await entered(api, app_runtime)
    await admit(app_runtime, entry.cookie_value)
    cache.listener.cancel()  # as when its receive fails (Redis restarted)
    await asyncio.wait([cache.listener])
    await asyncio.sleep(0)  # the listener's done callback
    assert not cache.listening
    monkeypatch.setattr(admission_cache, "FALLBACK_TTL", 0.0)

    await admit(app_runtime, entry.cookie_value)  # a miss: listening again, joined again

    assert cache.listening and entry.cookie_value in cache.entries
    evictions = cache.evictions
    await orm(
        session_terminate,
        session=app_runtime,
        actor=user,
        reason=EndReason.USER_STOP,
        origin=Origin(),
    )
    await asyncio.wait_for(cache.evicted(evictions), timeout=10)
    assert entry.cookie_value not in cache.entries


async def test_the_cache_forgets_what_no_longer_stands_and_the_app_still_opens(
    api, app_runtime, cache, monkeypatch
):
    entry = await entered(api, app_runtime)
    await admit(app_runtime, entry.cookie_value)
    groups = set(cache.joined)
    cache.sweep()  # nothing is old yet: kept
    assert entry.cookie_value in cache.entries and set(cache.joined) == groups

    # Two hours on: the entry's assertion is long spent and its groups were joined long ago.
    later = types.SimpleNamespace(
        monotonic=lambda: time.monotonic() + 7200, time=lambda: time.time() + 7200
    )
    monkeypatch.setattr(admission_cache, "time", later)
    cache.sweep()
    assert (cache.entries, cache.members, cache.joined, cache.evicted_at) == ({}, {}, {}, {})

    monkeypatch.undo()  # back to now: the tab comes back, its next request loads and joins again
    admission = await admit(app_runtime, entry.cookie_value)
    assert admission.grant_id == entry.admission.grant_id
    assert entry.cookie_value in cache.entries and set(cache.joined) == groups


async def test_bytes_are_counted_in_batches_and_audited_when_the_grant_ends(
    api, user, app_runtime, cache, monkeypatch
):
    entry = await entered(api, app_runtime)
    grant_id = entry.admission.grant_id
    await services.app_record_bytes(grant_id, to_app=100, to_browser=2000)
    await services.app_record_bytes(grant_id, to_app=5, to_browser=50)
    held = await orm(AppGrant.objects.get)
    assert (held.bytes_to_app, held.bytes_to_browser) == (0, 0)  # not yet written

    monkeypatch.setattr(services, "FLUSH_INTERVAL", 0.0)
    await services.app_record_bytes(grant_id, to_app=1, to_browser=1)

    grant = await orm(AppGrant.objects.get)
    assert (grant.bytes_to_app, grant.bytes_to_browser) == (106, 2051)
    await orm(
        session_terminate,
        session=app_runtime,
        actor=user,
        reason=EndReason.USER_STOP,
        origin=Origin(),
    )
    closed = await orm(AuditEntry.objects.get, action="app_session_closed")
    assert (closed.details["bytes_to_app"], closed.details["bytes_to_browser"]) == (106, 2051)
    opened = await orm(AuditEntry.objects.get, action="app_session_opened")
    assert opened.success and opened.details["mode"] == "origin"
    assert entry.cookie_value not in str(closed.details) + str(opened.details)


async def test_the_credential_the_ticket_and_the_cookie_are_never_logged(
    api, user, app_runtime, cache, caplog
):
    caplog.set_level("DEBUG")
    entry = await entered(api, app_runtime)
    await admit(app_runtime, entry.cookie_value)
    await orm(
        session_terminate,
        session=app_runtime,
        actor=user,
        reason=EndReason.USER_STOP,
        origin=Origin(),
    )

    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "app-credential-0042" not in logged
    assert entry.cookie_value not in logged and entry.admission.grant_id not in logged
    tickets = await orm(lambda: list(AuditEntry.objects.values_list("details", flat=True)))
    assert "app-credential-0042" not in str(tickets)


def test_grants_and_tickets_are_read_only_records_in_the_django_admin(site, api, app_runtime):
    entry = _entered(api, app_runtime, "origin")

    listed = site.get("/admin/app_proxy/appgrant/")
    tickets = site.get("/admin/app_proxy/appticket/")

    assert listed.status_code == tickets.status_code == 200
    assert entry.cookie_value not in listed.content.decode()
    assert b"Add app grant" not in listed.content


async def test_an_admission_says_whether_the_workspace_asks_for_the_tunnel(
    api, web_app, app_runtime, cache
):
    """What the proxy checks each request's address against, with no database call of its own."""
    entry = await entered(api, app_runtime)
    assert entry.admission.requires_tunnel is False

    await orm(lambda: Workspace.objects.filter(pk=web_app.pk).update(requires_netbird=True))
    loaded = await orm(
        services.admission_load, entry.admission.grant_id, "origin", app_runtime.runtime_id
    )

    assert loaded.admission.requires_tunnel is True


async def test_a_cookie_earns_the_apps_body_limit_only_for_its_runtime_and_while_a_grant_may_live(
    api, app_runtime, cache, monkeypatch
):
    """The signature check behind the 1 GiB upload limit (no database): not forever, not on
    another runtime; a cookie signed before the runtime was signed in with it still verifies."""
    entry = await entered(api, app_runtime)
    runtime_id = app_runtime.runtime_id

    assert services.cookie_is_signed(entry.cookie_value, runtime_id)
    assert not services.cookie_is_signed(entry.cookie_value, "wg-000000000000")
    old_style = services.grant_cookie(entry.admission.grant_id)
    assert services.cookie_is_signed(old_style, runtime_id)
    assert services.grant_id_of(entry.cookie_value) == entry.admission.grant_id

    later = time.time() + services.GRANT_MAX_AGE.total_seconds() + 60
    monkeypatch.setattr("django.core.signing.time.time", lambda: later)
    assert not services.cookie_is_signed(entry.cookie_value, runtime_id)
    assert not services.cookie_is_signed(old_style)
