"""Shared fixtures: users, signed-in API clients, local desktops, and a clean cache (rate limits)
per test; the suite-wide checks on every response; and the system programs a test needs."""

from __future__ import annotations

import importlib
import ipaddress

import pyotp
import pytest
from django.contrib.auth.models import Group, Permission
from django.core.cache import cache
from django.test import AsyncClient, Client
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import Profile, User
from accounts.views import MFA_VERIFIED_KEY
from core.database import close_connections, in_db_thread
from tests.support import apps
from tests.support.contract import response_violations
from tests.support.database import wait_until_other_connections_are_idle
from tests.support.desktops import GEOMETRY, stop_desktops_under
from tests.support.podman import podman_service
from tests.support.processes import missing_programs
from tests.support.secret_scan import assert_no_stored_secret
from tests.support.signin import PASSWORD, token_for


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test marked `needs_programs(...)` errors when one of them is missing, naming it; it never
    skips, so a machine without them cannot pass the suite by leaving those tests out."""
    for marker in item.iter_markers("needs_programs"):
        if missing := missing_programs(*marker.args):
            pytest.fail(
                f"needs {', '.join(missing)}, which make test installs (scripts/system-deps.sh)",
                pytrace=False,
            )


@pytest.fixture(scope="session", autouse=True)
def _database_threads_closed(django_db_setup):
    """The assistant's database threads keep their connections (async tests reach the ORM
    through them too, tests.support.database.orm); close them before the test database is
    dropped."""
    yield
    close_connections()


@pytest.fixture(autouse=True)
def _clean_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def _servers_settle_before_the_flush(request):
    """A transactional test's tables are flushed after it; first let any server process that
    shares the database (Daphne started by a fixture) finish what it was writing.

    Requesting transactional_db here sets it up before this fixture, so this teardown runs
    before its flush."""
    marker = request.node.get_closest_marker("django_db")
    transactional = "transactional_db" in request.fixturenames or bool(
        marker and marker.kwargs.get("transaction")
    )
    if transactional:
        request.getfixturevalue("transactional_db")
    yield
    if transactional:
        wait_until_other_connections_are_idle()


@pytest.fixture(autouse=True)
def _every_response_checked(monkeypatch):
    """Every JSON response any test receives is scanned for the secrets stored in the database
    (tests/support/secret_scan.py), and every API response is held to the OpenAPI document
    (tests/support/contract.py); Django's and DRF's test clients, and Django's async one (in the
    database threads, as async tests reach the ORM), all pass through here."""

    def check(response) -> None:
        assert_no_stored_secret(response)
        violations = response_violations(response)
        assert not violations, "\n".join(violations)

    original, original_async = Client.request, AsyncClient.request

    def request(self, **kwargs):
        response = original(self, **kwargs)
        check(response)
        return response

    async def async_request(self, **kwargs):
        response = await original_async(self, **kwargs)
        await in_db_thread(check)(response)
        return response

    monkeypatch.setattr(Client, "request", request)
    monkeypatch.setattr(AsyncClient, "request", async_request)


ADMINISTRATORS = importlib.import_module("accounts.migrations.0002_administrators_group")


def administrators_group() -> Group:
    """The group accounts migration 0002 creates, made again if a transactional test's flush
    removed it."""
    group, created = Group.objects.get_or_create(name=ADMINISTRATORS.GROUP)
    if created:
        for app_label, codename in ADMINISTRATORS.PERMISSIONS:
            group.permissions.add(
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
            )
    return group


@pytest.fixture
def make_user(db):
    counter = {"n": 0}

    def make(email: str | None = None, *, admin: bool = False, superuser: bool = False, **extra):
        counter["n"] += 1
        email = email or f"user{counter['n']}@example.com"
        user = User.objects.create_user(
            email=email,
            password=PASSWORD,
            is_staff=admin or superuser,
            is_superuser=superuser,
            **extra,
        )
        if admin:  # an administrator as the admin site makes one: staff, in the admin group
            user.groups.add(administrators_group())
        return user

    return make


@pytest.fixture
def staff_with(make_user):
    """A staff account holding exactly the given permissions ("app_label.codename"), no group:
    the role without (or with only some of) an administrator's rights."""

    def make(*permissions: str) -> User:
        user = make_user()
        user.is_staff = True
        user.save(update_fields=["is_staff"])
        for permission in permissions:
            app_label, codename = permission.split(".")
            user.user_permissions.add(
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
            )
        return User.objects.get(pk=user.pk)  # a fresh object: permissions are cached on it

    return make


@pytest.fixture
def user(make_user):
    return make_user("alice@example.com", first_name="Alice")


@pytest.fixture
def other_user(make_user):
    return make_user("bob@example.com", first_name="Bob")


@pytest.fixture
def admin_user(make_user):
    return make_user("admin@example.com", admin=True)


@pytest.fixture
def superuser(make_user):
    return make_user("root@example.com", superuser=True)


@pytest.fixture
def anon():
    return APIClient()


@pytest.fixture
def client_for():
    """An API client that sends `x-access-token` for the given user."""

    def make(user, *, mfa: bool = False, **defaults) -> APIClient:
        client = APIClient(**defaults)
        client.credentials(HTTP_X_ACCESS_TOKEN=token_for(user, mfa=mfa))
        return client

    return make


@pytest.fixture
def api(client_for, user):
    return client_for(user)


@pytest.fixture
def admin_api(client_for, admin_user):
    return client_for(admin_user)


@pytest.fixture
def site(client, superuser):
    """The Django admin, signed in as a superuser."""
    client.force_login(superuser)
    return client


@pytest.fixture
def browser_for():
    """A Django test client signed in with a session cookie, as the pages are used."""

    def make(user, *, mfa: bool = False) -> Client:
        client = Client()
        client.force_login(user)
        session = client.session
        session[MFA_VERIFIED_KEY] = mfa
        session.save()
        return client

    return make


@pytest.fixture
def desktops(settings, tmp_path):
    """Local desktops under a private runtime directory; whatever is left is stopped after."""
    runtime = tmp_path / "runtime"
    settings.WORKGATE_LOCAL_DESKTOP = True
    settings.WORKGATE_RUNTIME_DIR = runtime
    settings.WORKGATE_LOCAL_DESKTOP_COMMAND = ""  # no program: faster, and the screen is enough
    settings.WORKGATE_LOCAL_DESKTOP_GEOMETRY = "{}x{}".format(*GEOMETRY)
    # The tests launch as a plain user; who may launch one is tested on its own.
    settings.WORKGATE_LOCAL_DESKTOP_HOST_SHELL_FOR_EVERYONE = True
    yield runtime
    stop_desktops_under(runtime)


@pytest.fixture(scope="session")
def podman_engine(tmp_path_factory):
    """Podman's Docker-compatible API service for the run, with an internal network and the
    desktop image (tests/support/podman.py); the run's containers go at its end."""
    with podman_service(tmp_path_factory.mktemp("podman")) as engine:
        yield engine


@pytest.fixture(scope="session")
def jupyter_app(request, tmp_path_factory):
    """JupyterLab for the run (tests/support/apps.py), at base_url "/" unless a test
    parametrizes it indirectly: `@pytest.mark.parametrize("jupyter_app", ["/apps/<rid>/"],
    indirect=True)`."""
    base_url = getattr(request, "param", "/")
    with apps.jupyter(tmp_path_factory.mktemp("jupyter"), base_url=base_url) as app:
        yield app


@pytest.fixture(scope="session")
def httpbin_app(tmp_path_factory):
    """httpbin under gunicorn for the run (tests/support/apps.py)."""
    with apps.httpbin(tmp_path_factory.mktemp("httpbin")) as app:
        yield app


@pytest.fixture(scope="session")
def mcp_sse_app(tmp_path_factory):
    """npm's MCP server-everything in SSE mode for the run (tests/support/apps.py)."""
    with apps.mcp_sse(tmp_path_factory.mktemp("mcp")) as app:
        yield app


@pytest.fixture(scope="session")
def app_gateway(django_db_setup, tmp_path_factory):
    """The gateway in a Daphne process for the run, serving app origins under
    apps.localhost:<its port> with upstreams on loopback (tests/support/apps.py)."""
    with apps.app_gateway(tmp_path_factory.mktemp("app-gateway") / "daphne.log") as gateway:
        yield gateway


@pytest.fixture(scope="session")
def prefix_gateway(django_db_setup, tmp_path_factory):
    """A gateway without an apps domain: the only kind that serves apps under /apps/ (where an
    apps domain is set, an app is reached on its own origin and never under the prefix)."""
    with apps.app_gateway(
        tmp_path_factory.mktemp("prefix-gateway") / "daphne.log", WORKGATE_APPS_DOMAIN=""
    ) as gateway:
        yield gateway


@pytest.fixture
def app_settings(settings, app_gateway):
    """This process's settings as the gateway's: launches here pin loopback upstreams, and the
    tickets minted here name the gateway's app origins."""
    settings.WORKGATE_APPS_DOMAIN = app_gateway.domain
    settings.WORKGATE_APP_UPSTREAM_NETWORKS = [ipaddress.ip_network(apps.UPSTREAM_NETWORKS)]
    return settings


@pytest.fixture
def enable_mfa():
    def enable(user) -> str:
        secret = pyotp.random_base32()
        Profile.objects.update_or_create(
            user=user,
            defaults={
                "mfa_enabled": True,
                "totp_secret": secret,
                "totp_last_step": 0,
                "mfa_enabled_at": timezone.now(),
            },
        )
        return secret

    return enable
