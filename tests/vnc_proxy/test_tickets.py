"""POST /api/agents/workspace/ticket: a single-use, 60-second ticket for your own ready runtime."""

from __future__ import annotations

import ipaddress
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import Group
from django.db import DatabaseError, IntegrityError, connection
from django.db.models import F

from accounts.services import user_sign_out_everywhere
from audit import services as audit_services
from audit.models import AuditEntry
from audit.selectors import audit_chain_first_break
from core.network import Origin
from tests.support.sessions import OVERLAY_IP
from vnc_proxy import tickets
from vnc_proxy.models import Ticket
from vnc_proxy.services import RelayRefused, relay_admit, relay_opened, ticket_issue
from vnc_proxy.tickets import TICKET_AUDIENCE, TICKET_TYPE

pytestmark = pytest.mark.django_db

URL = "/api/agents/workspace/ticket"


def ask(client, workspace_id, **extra):
    return client.post(URL, {"workspaceId": workspace_id}, format="json", **extra)


def ticket_of(body: dict) -> str:
    return parse_qs(urlsplit(body["vncUrl"]).query)["ticket"][0]


def assert_refusal_audited(user, resource: str, workspace_id: str, refused: str) -> None:
    entry = AuditEntry.objects.get(action="ticket_issued")
    assert (entry.actor, entry.resource, entry.success) == (user, resource, False)
    assert entry.details == {"workspaceId": workspace_id, "refused": refused}


def test_a_ticket_is_issued_for_your_ready_runtime(api, user, make_runtime):
    runtime = make_runtime(user, rfb_password="s3cret-7")

    response = ask(api, runtime.runtime_id)

    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    ticket = ticket_of(body)
    assert body == {
        "success": True,
        "workspaceId": runtime.runtime_id,
        "vncUrl": f"ws://testserver/api/agents/workspace/vnc/{runtime.runtime_id}?ticket={ticket}",
        "vncPassword": "s3cret-7",
        "expiresInSec": 60,
    }
    claims = jwt.decode(
        ticket, django_settings.SECRET_KEY, algorithms=["HS256"], audience=TICKET_AUDIENCE
    )
    assert claims["token_type"] == TICKET_TYPE
    assert claims["user_id"] == str(user.pk)
    assert claims["workspaceId"] == runtime.runtime_id
    assert claims["exp"] - claims["iat"] == 60
    row = Ticket.objects.get()
    assert (row.jti, row.user, row.session, row.used_at) == (claims["jti"], user, runtime, None)
    assert row.expires_at - row.issued_at <= timedelta(seconds=60)
    assert row.client_ip == "127.0.0.1"
    entry = AuditEntry.objects.get(action="ticket_issued")
    assert (entry.actor, entry.resource, entry.success) == (user, f"session:{runtime.id}", True)
    assert entry.details["jti"] == claims["jti"]
    assert entry.details["workspaceId"] == runtime.runtime_id
    assert ticket not in str(entry.details) and "s3cret-7" not in str(entry.details)


def test_each_ticket_is_new(api, user, make_runtime):
    runtime = make_runtime(user)

    first, second = (ticket_of(ask(api, runtime.runtime_id).json()) for _ in range(2))

    assert first != second
    assert Ticket.objects.count() == 2


def test_the_url_is_wss_when_a_trusted_proxy_says_https(client_for, user, make_runtime, settings):
    settings.WORKGATE_TRUSTED_PROXIES = [ipaddress.ip_network("10.9.0.0/16")]
    runtime = make_runtime(user)
    behind_proxy = client_for(user, REMOTE_ADDR="10.9.0.2")
    direct = client_for(user, REMOTE_ADDR="192.0.2.10")

    https = {"HTTP_X_FORWARDED_PROTO": "https", "HTTP_HOST": "localhost"}

    proxied = ask(behind_proxy, runtime.runtime_id, **https).json()
    spoofed = ask(direct, runtime.runtime_id, **https).json()

    assert proxied["vncUrl"].startswith("wss://localhost/api/agents/workspace/vnc/")
    assert spoofed["vncUrl"].startswith("ws://localhost/")


@pytest.mark.parametrize(
    "payload",
    [{}, {"workspaceId": ""}, {"workspaceId": "../etc"}, {"workspaceId": "a" * 33}],
    ids=["missing", "empty", "path", "too-long"],
)
def test_a_missing_or_malformed_workspace_id_is_400(api, payload):
    response = api.post(URL, payload, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert "workspaceId" in response.json()["errors"]


def test_someone_elses_runtime_is_the_same_404_as_none(api, user, other_user, make_runtime):
    theirs = make_runtime(other_user)

    for_theirs = ask(api, theirs.runtime_id)
    for_nothing = ask(api, "wg-000000000000")

    assert for_theirs.status_code == for_nothing.status_code == 404
    assert (
        for_theirs.json()
        == for_nothing.json()
        == {
            "success": False,
            "detail": "Workspace runtime not found",
            "code": "not_found",
        }
    )
    assert not Ticket.objects.exists()


def test_a_session_without_a_desktop_is_not_a_runtime(api, user, make_runtime, make_workspace):
    web = make_workspace(connection_type="web", provisioner="static")
    session = make_runtime(user, workspace=web, upstream_kind="", upstream_target="")

    assert ask(api, session.runtime_id).status_code == 404


@pytest.mark.parametrize("status", ["starting", "terminated", "error"])
def test_a_runtime_that_is_not_ready_is_409(api, user, make_runtime, status):
    runtime = make_runtime(user, status=status)

    response = ask(api, runtime.runtime_id)

    assert response.status_code == 409
    assert response.json()["code"] == "not_ready"
    assert not Ticket.objects.exists()


def test_tickets_are_rate_limited_per_user(client_for, user, other_user, make_runtime, settings):
    settings.WORKGATE_TICKET_RATE = "3/m"
    mine, theirs = make_runtime(user), make_runtime(other_user)
    client = client_for(user)

    statuses = [ask(client, mine.runtime_id).status_code for _ in range(3)]
    limited = ask(client, mine.runtime_id)
    someone_else = ask(client_for(other_user), theirs.runtime_id)

    assert statuses == [200, 200, 200]
    assert limited.status_code == 429
    assert limited.json()["code"] == "rate_limited"
    assert int(limited["Retry-After"]) >= 1
    assert someone_else.status_code == 200
    assert Ticket.objects.count() == 4


def test_unauthenticated_requests_are_401_and_limited_by_address(anon, settings):
    settings.WORKGATE_TICKET_RATE = "2/m"

    statuses = [ask(anon, "wg-000000000000").status_code for _ in range(3)]

    assert statuses == [401, 401, 429]


def test_a_ticket_is_not_an_access_token(api, client_for, user, make_runtime):
    ticket = ticket_of(ask(api, make_runtime(user).runtime_id).json())
    client = client_for(user)
    client.credentials(HTTP_X_ACCESS_TOKEN=ticket)

    response = client.get("/api/auth/me")

    assert response.status_code == 401


def test_a_ticket_needs_the_workspace_still_shared_with_the_user(make_runtime, client_for, user):
    """Withdrawn from the user's groups after the launch: the session goes on, but no new
    connection is let in (the answer is the 404 of a runtime that is not theirs)."""
    runtime = make_runtime(user)
    client = client_for(user)

    def ticket():
        return client.post(
            "/api/agents/workspace/ticket", {"workspaceId": runtime.runtime_id}, format="json"
        )

    assert ticket().status_code == 200
    runtime.workspace.groups.set([Group.objects.create(name="Auditors")])
    refused = ticket()
    assert (refused.status_code, refused.json()["code"]) == (404, "not_found")
    user.groups.add(Group.objects.get(name="Auditors"))
    assert ticket().status_code == 200


class TestSignedOutAroundTheSpend:
    """Signing out everywhere while a viewer is being let in: whichever comes first, the viewer
    does not stay connected."""

    def spend(self, ticket: str, runtime_id: str):
        return relay_admit(ticket=ticket, workspace_id=runtime_id, origin=Origin(ip="127.0.0.1"))

    def test_a_relay_that_read_its_clock_before_the_sign_out_cannot_spend_a_voided_ticket(
        self, api, user, make_runtime, monkeypatch
    ):
        runtime = make_runtime(user)
        ticket = ticket_of(ask(api, runtime.runtime_id).json())
        before = tickets.now()
        user_sign_out_everywhere(user=user, actor=user, origin=Origin(ip="127.0.0.1"))
        monkeypatch.setattr(tickets, "now", lambda: before)

        with pytest.raises(RelayRefused) as refused:
            self.spend(ticket, runtime.runtime_id)

        assert (refused.value.code, refused.value.reason) == (4401, "ticket expired")
        assert Ticket.objects.get().used_at is None

    def test_a_sign_out_after_the_spend_refuses_the_connection_once_it_can_hear_it(
        self, api, user, make_runtime
    ):
        """The relay joins the account's group after the spend; a sign-out that committed in
        between was announced before it could hear it, so opening checks the account again."""
        runtime = make_runtime(user)
        target = self.spend(ticket_of(ask(api, runtime.runtime_id).json()), runtime.runtime_id)
        user_sign_out_everywhere(user=user, actor=user, origin=Origin(ip="127.0.0.1"))

        with pytest.raises(RelayRefused) as refused:
            relay_opened(target=target, origin=Origin(ip="127.0.0.1"), subprotocol="binary")

        assert (refused.value.code, refused.value.reason) == (4411, "signed out")
        entry = AuditEntry.objects.filter(action="vnc_connect").latest("id")
        assert (entry.success, entry.details["refused"]) == (False, "signed out")

    def test_a_ticket_minted_while_the_sign_out_commits_is_refused_at_the_relay(
        self, api, user, make_runtime, monkeypatch
    ):
        """The request was authenticated under the old epoch and its ticket row written after
        the sign-out's void ran: the ticket carries the epoch it was minted under."""
        from vnc_proxy import services as vnc_services

        runtime = make_runtime(user)
        mint = tickets.ticket_mint

        def sign_out_first(**claims):
            user_sign_out_everywhere(user=user, actor=user, origin=Origin(ip="127.0.0.1"))
            return mint(**claims)

        monkeypatch.setattr(vnc_services.tickets, "ticket_mint", sign_out_first)
        ticket = ticket_of(ask(api, runtime.runtime_id).json())
        monkeypatch.setattr(vnc_services.tickets, "ticket_mint", mint)
        assert Ticket.objects.get().expires_at > Ticket.objects.get().issued_at  # not voided

        with pytest.raises(RelayRefused) as refused:
            self.spend(ticket, runtime.runtime_id)

        assert (refused.value.code, refused.value.reason) == (4411, "signed out")
        assert Ticket.objects.get().used_at is not None  # spent all the same
        entry = AuditEntry.objects.filter(action="vnc_connect").latest("id")
        assert (entry.success, entry.details["refused"]) == (False, "signed out")

    def test_a_viewer_still_signed_in_is_let_in(self, api, user, make_runtime):
        runtime = make_runtime(user)
        target = self.spend(ticket_of(ask(api, runtime.runtime_id).json()), runtime.runtime_id)

        relay_opened(target=target, origin=Origin(ip="127.0.0.1"), subprotocol="binary")

        entry = AuditEntry.objects.filter(action="vnc_connect").latest("id")
        assert entry.success is True


# --- A ticket row and its audit entry, one statement ------------------------------------------


def _ticket(runtime, user, jti: str):
    at = tickets.now()
    return Ticket(jti=jti, session=runtime, user=user, issued_at=at, expires_at=at)


@pytest.mark.django_db(transaction=True)
def test_a_row_and_its_entry_written_as_one_statement_by_concurrent_writers(user, make_runtime):
    """record_created outside a transaction (one statement the server commits): the rows and
    the entries all land, on one valid chain, whatever the interleaving."""
    runtime = make_runtime(user)
    barrier = threading.Barrier(20, timeout=60)

    def writer(index):
        try:
            barrier.wait()
            for n in range(5):
                assert not connection.in_atomic_block
                audit_services.record_created(
                    _ticket(runtime, user, f"jti-{index}-{n}"),
                    action="ticket_issued",
                    actor=user,
                    details={"writer": index, "n": n},
                )
        finally:
            connection.close()

    with ThreadPoolExecutor(20) as pool:
        list(pool.map(writer, range(20)))

    assert Ticket.objects.count() == AuditEntry.objects.count() == 20 * 5
    assert audit_chain_first_break() is None


@pytest.mark.django_db(transaction=True)
def test_a_row_that_cannot_be_written_leaves_no_entry_and_an_entry_that_cannot_no_row(
    user, make_runtime, monkeypatch
):
    runtime = make_runtime(user)

    def issue(jti: str):
        return audit_services.record_created(
            _ticket(runtime, user, jti), action="ticket_issued", actor=user
        )

    issue("taken")
    with pytest.raises(IntegrityError):  # the same primary key again
        issue("taken")
    monkeypatch.setattr(audit_services, "_CHAIN_LOCK", "not a lock id")
    with pytest.raises(DatabaseError):  # the entry fails
        issue("fresh")

    assert list(Ticket.objects.values_list("jti", flat=True)) == ["taken"]
    assert AuditEntry.objects.count() == 1
    assert audit_chain_first_break() is None


def test_a_row_whose_key_the_database_makes_is_refused_before_anything_is_written():
    with pytest.raises(TypeError):
        audit_services.record_created(Group(name="made by the database"), action="x")

    assert not Group.objects.filter(name="made by the database").exists()
    assert not AuditEntry.objects.exists()


@pytest.mark.parametrize("how", ["account", "deployment"])
def test_without_a_verified_code_no_ticket_opens_a_desktop_that_needs_one(
    client_for, user, make_runtime, enable_mfa, settings, how
):
    """Someone holding a token from before two-step sign-in was turned on, or from a sign-in
    without the code, cannot reach the desktop launched with it."""
    if how == "account":
        enable_mfa(user)
    else:
        settings.WORKGATE_REQUIRE_MFA = True
    runtime = make_runtime(user, rfb_password="s3cret-7")

    refused = ask(client_for(user, mfa=False), runtime.runtime_id)

    assert refused.status_code == 403
    assert refused.json() == {
        "success": False,
        "detail": "Connecting to a desktop requires a sign-in verified with a one-time code.",
        "code": "mfa_required",
    }
    assert "s3cret-7" not in refused.content.decode()
    assert not Ticket.objects.exists()
    assert_refusal_audited(user, f"session:{runtime.id}", runtime.runtime_id, "mfa_required")
    # The same account, signed in with its code, connects.
    assert ask(client_for(user, mfa=True), runtime.runtime_id).status_code == 200
    assert Ticket.objects.count() == 1


def test_a_browser_session_without_the_code_gets_no_ticket_either(
    browser_for, user, make_runtime, enable_mfa
):
    enable_mfa(user)
    runtime = make_runtime(user)

    refused = browser_for(user, mfa=False).post(
        URL, {"workspaceId": runtime.runtime_id}, content_type="application/json"
    )
    allowed = browser_for(user, mfa=True).post(
        URL, {"workspaceId": runtime.runtime_id}, content_type="application/json"
    )

    assert (refused.status_code, refused.json()["code"]) == (403, "mfa_required")
    assert allowed.status_code == 200
    assert Ticket.objects.count() == 1


def test_someone_elses_runtime_is_404_before_anything_is_said_about_codes(
    client_for, user, other_user, make_runtime, enable_mfa
):
    enable_mfa(other_user)
    theirs = make_runtime(other_user)

    response = ask(client_for(user), theirs.runtime_id)

    assert (response.status_code, response.json()["code"]) == (404, "not_found")
    # The probe is audited as the caller's, saying no more than the answer did.
    assert_refusal_audited(user, f"runtime:{theirs.runtime_id}", theirs.runtime_id, "not_found")
    assert not Ticket.objects.exists()


def test_a_door_no_runtime_can_have_spends_the_ticket_and_is_refused_4404(api, user, make_runtime):
    """A NUL in the relay path (PostgreSQL refuses it in a query) is an unknown workspace like
    any other: the ticket is spent, the refusal audited, nothing fails."""
    runtime = make_runtime(user)
    ticket = ticket_of(ask(api, runtime.runtime_id).json())

    with pytest.raises(RelayRefused) as refused:
        relay_admit(ticket=ticket, workspace_id="wg-\x00", origin=Origin(ip="127.0.0.1"))

    assert (refused.value.code, refused.value.reason) == (4404, "unknown workspace")
    assert Ticket.objects.get().used_at is not None
    entry = AuditEntry.objects.get(action="vnc_connect")
    assert (entry.success, entry.details["refused"]) == (False, "unknown workspace")


@pytest.mark.parametrize("epoch, refused", [(0, None), (1, (4411, "signed out"))])
def test_a_ticket_from_before_tickets_carried_the_epoch_counts_as_epoch_zero(
    user, make_runtime, epoch, refused
):
    """During a rolling upgrade a viewer may bring a ticket minted by a process of the previous
    release: it is good for an account never signed out everywhere, as its access token is."""
    runtime = make_runtime(user)
    type(user).objects.filter(pk=user.pk).update(sign_in_epoch=epoch)
    at = tickets.now()
    old = tickets.TicketToken()
    old.set_iat(at_time=at)
    old.set_exp(from_time=at)
    old["aud"] = TICKET_AUDIENCE
    old["user_id"] = str(user.pk)
    old["workspaceId"] = runtime.runtime_id
    expires = at + timedelta(seconds=60)
    Ticket.objects.create(
        jti=old["jti"], session=runtime, user=user, issued_at=at, expires_at=expires
    )

    def spend():
        return relay_admit(
            ticket=str(old), workspace_id=runtime.runtime_id, origin=Origin(ip="127.0.0.1")
        )

    if refused is None:
        assert spend().runtime_id == runtime.runtime_id
    else:
        with pytest.raises(RelayRefused) as refusal:
            spend()
        assert (refusal.value.code, refusal.value.reason) == refused


class TestTunnelOnlyDesktops:
    """A workspace launched only through the encrypted tunnel is connected to only through it:
    a stolen token used from the internet gets no ticket, and a ticket carried out of the
    tunnel opens nothing."""

    @pytest.fixture
    def runtime(self, user, make_runtime, make_workspace):
        return make_runtime(
            user, workspace=make_workspace(provisioner="static", requires_netbird=True)
        )

    def test_outside_the_tunnel_no_ticket_is_issued(self, api, client_for, user, runtime):
        refused = ask(api, runtime.runtime_id)

        assert refused.status_code == 403
        assert refused.json() == {
            "success": False,
            "detail": "This desktop requires an encrypted tunnel: connect through NetBird and "
            "try again.",
            "code": "tunnel_required",
        }
        assert not Ticket.objects.exists()
        assert_refusal_audited(user, f"session:{runtime.id}", runtime.runtime_id, "tunnel_required")
        inside = client_for(user, REMOTE_ADDR=OVERLAY_IP)
        assert ask(inside, runtime.runtime_id).status_code == 200
        assert Ticket.objects.get().client_ip == OVERLAY_IP

    @pytest.mark.parametrize("used_from, admitted", [(OVERLAY_IP, True), ("203.0.113.5", False)])
    def test_a_ticket_opens_the_relay_only_from_inside_the_tunnel(
        self, client_for, user, runtime, used_from, admitted
    ):
        ticket = ticket_of(ask(client_for(user, REMOTE_ADDR=OVERLAY_IP), runtime.runtime_id).json())

        def spend():
            return relay_admit(
                ticket=ticket, workspace_id=runtime.runtime_id, origin=Origin(ip=used_from)
            )

        if admitted:
            assert spend().runtime_id == runtime.runtime_id
            assert not AuditEntry.objects.filter(action="vnc_connect").exists()
        else:
            with pytest.raises(RelayRefused) as refusal:
                spend()
            assert (refusal.value.code, refusal.value.reason) == (4403, "tunnel required")
            entry = AuditEntry.objects.get(action="vnc_connect")
            assert (entry.success, entry.ip_address) == (False, used_from)
            assert entry.details["refused"] == "tunnel required"
        assert Ticket.objects.get().used_at is not None  # spent either way


@pytest.mark.parametrize("how", ["used", "expired"])
def test_a_spent_ticket_shown_again_and_again_is_audited_once(api, user, make_runtime, how):
    """Whoever captured a ticket may replay it as often as they like: each replay is refused,
    the first is audited (the sign of a leaked ticket), the rest leave the audit log alone."""
    runtime = make_runtime(user)
    ticket = ticket_of(ask(api, runtime.runtime_id).json())
    origin = Origin(ip="198.51.100.9")
    if how == "used":
        relay_admit(ticket=ticket, workspace_id=runtime.runtime_id, origin=Origin(ip="127.0.0.1"))
    else:
        Ticket.objects.update(expires_at=F("issued_at"))
    reason = "ticket already used" if how == "used" else "ticket expired"

    for _ in range(5):
        with pytest.raises(RelayRefused) as refusal:
            relay_admit(ticket=ticket, workspace_id=runtime.runtime_id, origin=origin)
        assert (refusal.value.code, refusal.value.reason) == (4401, reason)

    [entry] = AuditEntry.objects.filter(action="vnc_connect", success=False)
    assert (entry.ip_address, entry.details["refused"]) == ("198.51.100.9", reason)
    row = Ticket.objects.get()
    assert row.replayed_at is not None
    assert audit_chain_first_break() is None


@pytest.mark.django_db(transaction=True)  # as served: autocommit, not inside a test's transaction
def test_a_ticket_is_two_statements_its_lookup_and_its_row_with_its_entry(
    user, make_runtime, django_assert_num_queries
):
    """The lookup reads only what a ticket needs (no column it leaves out is fetched later, one
    query each) and the row is written with its audit entry in one statement."""
    runtime = make_runtime(user, upstream_secret="not-needed-here")

    with django_assert_num_queries(2):
        issued = ticket_issue(
            user=user,
            workspace_id=runtime.runtime_id,
            origin=Origin(ip="127.0.0.1"),
            mfa_verified=True,
        )

    assert issued.rfb_password == runtime.rfb_password
    assert issued.workspace_id == runtime.runtime_id
