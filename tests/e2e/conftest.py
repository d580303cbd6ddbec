"""Real-browser fixtures: a Daphne on a free port against the test database, and Debian's Chromium.

Playwright drives /usr/bin/chromium through `executable_path`; no browser is ever downloaded.
Tests here use `django_db(transaction=True)`, so what they write is committed and the Daphne
process (a separate process on the same test database) sees it. The pages' Content Security
Policy holds for the tests too: `wait_for_function` takes a function ("() => ..."), since a bare
expression is evaluated with eval, which the policy refuses.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from importlib import import_module
from pathlib import Path

import pytest
from django.conf import global_settings, settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.db import connections
from playwright.sync_api import sync_playwright

from accounts.views import MFA_VERIFIED_KEY, MODEL_BACKEND
from core.network import SYSTEM
from sessions_app.models import WorkspaceSession
from tests.support import processes
from tests.support.desktops import stop_desktops_under
from tests.support.processes import ROOT
from tests.support.providers import FakeProvider

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = ROOT / "test-results" / "screenshots"
TIMEOUT_MS = 20_000


@pytest.fixture(scope="session")
def fake_openai():
    """An OpenAI-compatible streaming server on loopback, for assistants whose provider is
    "openai" (the default provider stays the builtin one). Tests script its replies."""
    provider = FakeProvider().start()
    yield provider
    provider.stop()


@pytest.fixture(scope="session")
def server_port(django_db_setup, fake_openai, tmp_path_factory) -> int:
    """Daphne serving the whole app (pages, API, relay) from the pytest-django test database."""
    runtime = tmp_path_factory.mktemp("runtime")
    log = tmp_path_factory.mktemp("daphne") / "daphne.log"
    with processes.daphne(
        log,
        SESSION_COOKIE_SECURE="0",  # plain http on loopback
        WORKGATE_LOCAL_DESKTOP="1",
        WORKGATE_LOCAL_DESKTOP_HOST_SHELL_FOR_EVERYONE="1",  # the tests' users are not superusers
        # A shell that reads no rc files: the machine's own (pyenv init and the like) can take
        # many seconds to show a prompt, and the tests type into it.
        WORKGATE_LOCAL_DESKTOP_COMMAND="xterm -e bash --norc --noprofile",
        WORKGATE_TRUSTED_NETWORKS="127.0.0.0/8,::1/128",
        WORKGATE_RUNTIME_DIR=str(runtime),
        # Two: a reconnect overlaps its dropped connection at most; a third viewer is refused.
        WORKGATE_VNC_MAX_VIEWERS="2",
        OPENAI_BASE_URL=f"{fake_openai.base_url}/v1",
        OPENAI_API_KEY="test-key",
        WORKGATE_AI_PROVIDER="builtin",
        PYTHONUNBUFFERED="1",
    ) as port:
        yield port
    # Desktops outlive the server that started them (by design); none of ours may outlive the run.
    stop_desktops_under(runtime)


@pytest.fixture(scope="session")
def server_url(server_port) -> str:
    return f"http://127.0.0.1:{server_port}"


@pytest.fixture(scope="module")
def browser():
    """Chromium for one test module.

    Playwright's sync API keeps an asyncio loop running on this thread while it is started, and
    Django refuses ORM calls from a thread with a running loop. The tests' own ORM calls are
    plain synchronous code, so they are allowed for exactly as long as Playwright runs; module
    scope makes sure no later, non-browser test inherits either the loop or the permission.
    """
    assert CHROMIUM.exists(), "Debian's chromium is needed (make test installs it with apt)"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
            )
            yield browser
            browser.close()


@pytest.fixture
def new_page(browser, server_url):
    """Open a page in a fresh browser context (its own cookies), at `base_url` or the server.

    Whatever the test does, no page may have been refused anything by the Content Security
    Policy: a refusal is a script, style or connection the page needed and did not get."""
    contexts = []
    refused = []

    def make(base_url: str | None = None):
        context = browser.new_context(
            base_url=base_url or server_url, viewport={"width": 1280, "height": 860}
        )
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        page.on(
            "console",
            lambda message: (
                "Content Security Policy" in message.text
                and refused.append(f"{page.url}: {message.text}")
            ),
        )
        return page

    yield make
    for context in contexts:
        context.close()
    assert not refused, "\n".join(refused)


@pytest.fixture
def page(new_page):
    return new_page()


@pytest.fixture
def screenshot(request):
    """Save a full-page screenshot under test-results/screenshots/, named after the test."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    test_name = re.sub(r"[^\w.-]+", "_", request.node.name)

    def take(page, name: str) -> Path:
        path = SCREENSHOTS / f"{test_name}--{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


def sign_in(page, user, *, mfa: bool = False, secure: bool = False) -> None:
    """Give the page's browser context a signed-in session cookie for `user` (no form typing),
    named as a server whose SESSION_COOKIE_SECURE is `secure` names it: Django's own name on the
    plain-http server of these tests (server_port), the __Host- one where cookies are Secure
    (config/settings.py; the suite's settings and the app gateway of tests/support/apps.py)."""
    store = import_module(settings.SESSION_ENGINE).SessionStore()
    store[SESSION_KEY] = str(user.pk)
    store[BACKEND_SESSION_KEY] = MODEL_BACKEND
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store[MFA_VERIFIED_KEY] = mfa
    store.save()
    page.context.add_cookies(
        [
            {
                "name": settings.SESSION_COOKIE_NAME
                if secure
                else global_settings.SESSION_COOKIE_NAME,
                "value": store.session_key,
                "domain": "127.0.0.1",  # cookies ignore the port: the proxy's pages get it too
                "path": "/",
                "httpOnly": True,
                # A __Host- name needs it; Chromium sends a Secure cookie to http://127.0.0.1 too.
                "secure": secure,
            }
        ]
    )


@pytest.fixture(autouse=True)
def _end_live_sessions(transactional_db):
    """Stop every desktop a test left running before the database is emptied."""
    yield
    from sessions_app.services import EndReason, session_terminate

    def end_all() -> None:
        try:
            for session in WorkspaceSession.objects.filter(status__in=WorkspaceSession.LIVE):
                session_terminate(
                    session=session, actor=None, reason=EndReason.TERMINATED, origin=SYSTEM
                )
        finally:
            connections.close_all()

    # In a thread of its own: ending a session notifies the relays with async_to_sync, which
    # refuses to run on this thread while Playwright's event loop is running here.
    worker = threading.Thread(target=end_all)
    worker.start()
    worker.join(60)


class DroppingProxy:
    """A loopback TCP proxy in front of Daphne that can cut its WebSocket connections at will,
    the way a network blip or a restarted load balancer would."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._lock = threading.Lock()
        self._websockets: list[tuple[socket.socket, socket.socket]] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            first = client.recv(65536)
        except OSError:
            client.close()
            return
        if b"upgrade: websocket" in first.lower():
            with self._lock:
                self._websockets.append((client, upstream))
        upstream.sendall(first)
        threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()
        self._pump(client, upstream)

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def drop_websockets(self) -> int:
        """Cut every WebSocket connection made through the proxy so far; how many were cut."""
        with self._lock:
            victims, self._websockets = self._websockets, []
        for pair in victims:
            for sock in pair:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        return len(victims)

    def close(self) -> None:
        self._closed = True
        self.listener.close()
        self.drop_websockets()


@pytest.fixture
def dropping_proxy(server_port):
    proxy = DroppingProxy(server_port)
    yield proxy
    proxy.close()
