"""The app proxy's settings a gateway refuses to start with, naming the setting: a network list
that would make it an open proxy, and an apps domain whose origins would share cookies with the
gateway's own. And what `make run` (DEBUG) gets without any setting."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.http import parse_cookie

from tests.support.processes import ROOT, import_fresh

pytestmark = pytest.mark.django_db


def start(**settings: str):
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("WORKGATE_APP")},
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "PYTHONPATH": str(ROOT),
        "DEBUG": "0",
        "SECRET_KEY": "x" * 50,
        "WORKGATE_ENCRYPTION_KEY": "q5oZ3n8Yf0tq7bU4rQ1xwz6m0F4c2dXv9Hh8JkLmN0s=",
        **settings,
    }
    return import_fresh("config.settings", env)


@pytest.mark.parametrize("networks", ["0.0.0.0/0", "10.0.0.0/8,0.0.0.0/1", "::/0", "2001::/8"])
def test_networks_as_wide_as_the_internet_are_refused_at_start(networks):
    started = start(WORKGATE_APP_UPSTREAM_NETWORKS=networks)

    assert started.returncode != 0
    assert "WORKGATE_APP_UPSTREAM_NETWORKS" in started.stderr
    assert "never the internet" in started.stderr


def test_a_network_that_is_not_one_is_refused_at_start():
    started = start(WORKGATE_APP_UPSTREAM_NETWORKS="10.0.0.0/8,intranet")

    assert started.returncode != 0
    assert "WORKGATE_APP_UPSTREAM_NETWORKS: 'intranet' is not a CIDR network" in started.stderr


@pytest.mark.parametrize(
    "domain",
    [
        "gateway.example.com",  # the gateway's own host
        "apps.gateway.example.com",  # under it: an app could set the gateway's cookies
        "example.com",  # holds it
        "GATEWAY.example.com.:8443",
    ],
)
def test_an_apps_domain_sharing_cookies_with_the_gateway_is_refused_at_start(domain):
    started = start(ALLOWED_HOSTS="gateway.example.com", WORKGATE_APPS_DOMAIN=domain)

    assert started.returncode != 0
    assert "WORKGATE_APPS_DOMAIN" in started.stderr and "shares cookies" in started.stderr


@pytest.mark.parametrize("domain", ["apps", "*.apps.example.com", "[::1]"])
def test_an_apps_domain_that_is_no_wildcard_dns_name_is_refused(domain):
    started = start(WORKGATE_APPS_DOMAIN=domain)

    assert started.returncode != 0
    assert "WORKGATE_APPS_DOMAIN must be a DNS name" in started.stderr


def test_an_apps_domain_of_its_own_starts_and_the_debug_default_is_apps_localhost():
    own = start(
        ALLOWED_HOSTS="gateway.example.com",
        WORKGATE_APPS_DOMAIN="example-apps.com",
        WORKGATE_APP_UPSTREAM_NETWORKS="10.20.0.0/16",
        WORKGATE_APP_SIGNING_KEY="unused: loaded on first use",
    )
    assert own.returncode == 0, own.stderr

    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "DEBUG": "1"}
    env = {k: v for k, v in env.items() if not k.startswith("WORKGATE_APP")}
    shown = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings; "
            "print(settings.WORKGATE_APPS_DOMAIN, settings.WORKGATE_APP_UPSTREAM_NETWORKS)",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.stdout.split("\n")[0] == "apps.localhost:8000 []", shown.stderr


def test_an_apps_domain_beside_the_gateway_leaves_it_no_cookie_an_app_can_plant():
    """apps.example.com beside gw.example.com starts (a sibling shares no host with the
    gateway), and every app's scripts there may write `Domain=example.com` cookies, which the
    browser sends to the gateway too. Over https the gateway's cookies have __Host- names, which
    a browser takes only from the gateway's own host: a planted `sessionid` or `csrftoken` is
    not the cookie the gateway reads."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("WORKGATE_APP")},
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DEBUG": "0",
        "SECRET_KEY": "x" * 50,
        "WORKGATE_ENCRYPTION_KEY": "q5oZ3n8Yf0tq7bU4rQ1xwz6m0F4c2dXv9Hh8JkLmN0s=",
        "ALLOWED_HOSTS": "gw.example.com",
        "WORKGATE_APPS_DOMAIN": "apps.example.com",
        "WORKGATE_APP_SIGNING_KEY": "unused: loaded on first use",
    }
    shown = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings as s; "
            "print(s.SESSION_COOKIE_NAME, s.CSRF_COOKIE_NAME, s.SESSION_COOKIE_SECURE)",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert shown.returncode == 0, shown.stderr
    session_cookie, csrf_cookie, secure = shown.stdout.split()
    assert (session_cookie, csrf_cookie, secure) == ("__Host-sessionid", "__Host-csrftoken", "True")
    # What the gateway reads from a browser that also holds a cookie an app planted.
    sent = parse_cookie(f"{session_cookie}=users; sessionid=attackers; csrftoken=attackers")
    assert sent[session_cookie] == "users"
