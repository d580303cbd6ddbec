"""Workgate settings: one module, every knob from the environment (see the README's table)."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from core.csp import static_headers
from core.env import (
    env_bool,
    env_choice,
    env_int,
    env_list,
    env_networks,
    env_rate,
    env_str,
)

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", False)


def _development_secret_key() -> str:
    """A random key kept in a private file, so a restart of `make run` keeps people signed in."""
    path = BASE_DIR / ".dev-secret-key"
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(50))
    return path.read_text().strip()


SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY is required when DEBUG is off")
    SECRET_KEY = _development_secret_key()

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "config",  # the roof; its commands: rotate_secrets, reap_sessions
    "accounts",
    "audit",
    "workspaces",
    "sessions_app",
    "recordings",
    "vnc_proxy",
    "app_proxy",
    "streaming",
    "socketio_server",
]

# Django's own middleware, each with its hooks run on the event loop under ASGI where they only
# compute (config/middleware.py); same order and behaviour as the django.* classes.
MIDDLEWARE = [
    "core.network.TrustedProxyMiddleware",
    "config.middleware.SecurityMiddleware",
    "config.middleware.WhiteNoiseMiddleware",
    "config.middleware.NeverStoredMiddleware",
    "config.middleware.ContentSecurityPolicyMiddleware",
    "config.middleware.SessionMiddleware",
    "config.middleware.CommonMiddleware",
    "config.middleware.CsrfViewMiddleware",
    "config.middleware.AuthenticationMiddleware",
    "config.middleware.MessageMiddleware",
    "config.middleware.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Data stores -------------------------------------------------------------------------------

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
        conn_max_age=0,
        # A connection is checked before use: after a PostgreSQL restart or a connection
        # dropped by the network, the next request gets a fresh one, not an error. One empty
        # query; from Django's pool, only for a connection idle a while or whose socket holds
        # the server's goodbye (core/database.py).
        conn_health_checks=True,
    )
}
# Options from DATABASE_URL's query string (sslmode, sslrootcert, options, ...) stay: these add.
_database_options = DATABASES["default"].setdefault("OPTIONS", {})
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE makes every transaction take the write lock up front, so concurrent writers
    # queue instead of failing with "database is locked" halfway through.
    _database_options.update(transaction_mode="IMMEDIATE", timeout=20)
    # The file holds sign-in sessions and password hashes: the server's user's alone, so a
    # local desktop (another uid on this host) cannot read it, whatever the umask made it
    # (SQLite gives its journal and WAL files the database file's mode).
    _sqlite_file = str(DATABASES["default"]["NAME"])
    if _sqlite_file != ":memory:" and os.path.isdir(os.path.dirname(_sqlite_file) or "."):
        os.close(os.open(_sqlite_file, os.O_CREAT | os.O_RDONLY, 0o600))
        os.chmod(_sqlite_file, 0o600)
# PostgreSQL connections come from a pool per process (psycopg_pool, through Django's own
# support): a request borrows one and gives it back at its end instead of opening and closing
# one (3 to 15 ms each on a small machine; measured in docs/benchmarks.md). Past the cap a
# request waits up to 10 s for one to come back (deployment.md sizes it). 0 opens a connection
# per request, as without a pool.
WORKGATE_DB_POOL_SIZE = env_int("WORKGATE_DB_POOL_SIZE", 40, minimum=0)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and WORKGATE_DB_POOL_SIZE:
    _database_options["pool"] = {
        "min_size": min(2, WORKGATE_DB_POOL_SIZE),
        "max_size": WORKGATE_DB_POOL_SIZE,
        "timeout": 10,
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"

REDIS_URL = env_str("REDIS_URL")
# Each open Socket.IO socket and each waiting long-poll holds one connection (a blocking read of
# its session's queue), and redis-py 8 refuses a command past the pool's size instead of waiting.
WORKGATE_REDIS_MAX_CONNECTIONS = env_int("WORKGATE_REDIS_MAX_CONNECTIONS", 2000, minimum=10)
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # redis-py 8 times socket reads out after 5 s by default, which aborts the layer's
            # blocking BZPOPMIN on every idle consumer (django/channels_redis#422).
            "CONFIG": {
                "hosts": [
                    {
                        "address": REDIS_URL,
                        "socket_timeout": None,
                        "max_connections": WORKGATE_REDIS_MAX_CONNECTIONS,
                    }
                ],
                "capacity": 1500,
                "expiry": 30,
            },
        }
    }
    CACHES = {
        "default": {
            # django-redis: the cache objects Django builds (one per request) share one
            # connection pool per process, and incr is one atomic script that never brings
            # back an expired counter without its expiry.
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "workgate",
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    # One process, one cache: the embedded default's rate limits are per process by design.
    SILENCED_SYSTEM_CHECKS = ["django_ratelimit.W001", "django_ratelimit.E003"]

RATELIMIT_USE_CACHE = "default"

# --- Security ----------------------------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]


def _encryption_keys() -> list[bytes]:
    keys = env_list("WORKGATE_ENCRYPTION_KEY")
    if keys:
        return [key.encode() for key in keys]
    if not DEBUG:
        raise ImproperlyConfigured(
            "WORKGATE_ENCRYPTION_KEY is required when DEBUG is off "
            '(generate one: python -c "from cryptography.fernet import Fernet; '
            'print(Fernet.generate_key().decode())")'
        )
    digest = hashlib.sha256(b"workgate-encryption:" + SECRET_KEY.encode()).digest()
    return [base64.urlsafe_b64encode(digest)]


WORKGATE_ENCRYPTION_KEYS = _encryption_keys()
WORKGATE_TRUSTED_PROXIES = env_networks("WORKGATE_TRUSTED_PROXIES")
WORKGATE_TRUSTED_NETWORKS = env_networks(
    "WORKGATE_TRUSTED_NETWORKS",
    ["100.64.0.0/10", *(["127.0.0.0/8", "::1/128"] if DEBUG else [])],
)
WORKGATE_REQUIRE_MFA = env_bool("WORKGATE_REQUIRE_MFA", False)
WORKGATE_ACCESS_TOKEN_TTL = env_int("WORKGATE_ACCESS_TOKEN_TTL", 86400, minimum=60)
WORKGATE_REFRESH_TOKEN_TTL = env_int("WORKGATE_REFRESH_TOKEN_TTL", 7 * 86400, minimum=60)
WORKGATE_SIGNIN_RATE = env_rate("WORKGATE_SIGNIN_RATE", "20/m")
# Failed password checks per account (by email, known or not), from whatever addresses.
WORKGATE_SIGNIN_ACCOUNT_RATE = env_rate("WORKGATE_SIGNIN_ACCOUNT_RATE", "10/15m")
WORKGATE_REFRESH_RATE = env_rate("WORKGATE_REFRESH_RATE", "60/m")
WORKGATE_LAUNCH_RATE = env_rate("WORKGATE_LAUNCH_RATE", "30/m")
WORKGATE_TICKET_RATE = env_rate("WORKGATE_TICKET_RATE", "10/m")
WORKGATE_QANDA_RATE = env_rate("WORKGATE_QANDA_RATE", "30/m")

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
# Over https the gateway's cookies have __Host- names: a browser takes such a cookie only from
# this host itself, Secure, with Path=/ and no Domain, so no other name under the same parent
# domain (a web app behind the gateway at <runtime-id>.apps.example.com beside gw.example.com,
# whose scripts can write `Domain=example.com` cookies) can plant a session or a CSRF token here.
if SESSION_COOKIE_SECURE:
    SESSION_COOKIE_NAME = "__Host-sessionid"
    CSRF_COOKIE_NAME = "__Host-csrftoken"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

# --- Workspaces, sessions and desktops -------------------------------------------------------

WORKGATE_MAX_SESSIONS_PER_USER = env_int("WORKGATE_MAX_SESSIONS_PER_USER", 5, minimum=1)
WORKGATE_SESSION_IDLE_TIMEOUT = env_int("WORKGATE_SESSION_IDLE_TIMEOUT", 3600, minimum=60)
WORKGATE_SESSION_MAX_AGE = env_int("WORKGATE_SESSION_MAX_AGE", 43200, minimum=60)
WORKGATE_VNC_IDLE_TIMEOUT = env_int("WORKGATE_VNC_IDLE_TIMEOUT", 1800, minimum=10)
WORKGATE_VNC_MAX_VIEWERS = env_int("WORKGATE_VNC_MAX_VIEWERS", 4, minimum=1)
WORKGATE_LOCAL_DESKTOP = env_bool("WORKGATE_LOCAL_DESKTOP", DEBUG)
WORKGATE_LOCAL_DESKTOP_COMMAND = env_str("WORKGATE_LOCAL_DESKTOP_COMMAND", "xterm")
WORKGATE_LOCAL_DESKTOP_GEOMETRY = env_str("WORKGATE_LOCAL_DESKTOP_GEOMETRY", "1280x800")
# The account whose subordinate ids (/etc/subuid, /etc/subgid) local desktops run as, one id
# each: never the gateway's own user, never root (scripts/desktop-account.sh makes it).
WORKGATE_LOCAL_DESKTOP_USER = env_str("WORKGATE_LOCAL_DESKTOP_USER", "workgate-desktop")
# A local desktop is a shell on the gateway's own host: superusers only, unless this is on.
WORKGATE_LOCAL_DESKTOP_HOST_SHELL_FOR_EVERYONE = env_bool(
    "WORKGATE_LOCAL_DESKTOP_HOST_SHELL_FOR_EVERYONE", False
)
WORKGATE_RUNTIME_DIR = Path(env_str("WORKGATE_RUNTIME_DIR", str(BASE_DIR / ".runtime")))

# Recordings (issue 22, docs/recordings.md): the directory store, created 0700, files 0600.
WORKGATE_RECORDINGS_DIR = Path(
    env_str("WORKGATE_RECORDINGS_DIR", str(WORKGATE_RUNTIME_DIR / "recordings"))
)

# Desktops of one's own (the `container` provisioner, docs/deployment.md "Desktop hosts"): the
# Docker-API engines (Docker Engine, or Podman's `podman system service`) a launch may go to,
# unix:///path or tcp://host:port (tcp only with TLS client certificates: ca.pem, cert.pem and
# key.pem in WORKGATE_CONTAINER_TLS_DIR).
WORKGATE_CONTAINER_ENGINES = env_list("WORKGATE_CONTAINER_ENGINES")
WORKGATE_CONTAINER_TLS_DIR = env_str("WORKGATE_CONTAINER_TLS_DIR")
# None (the default): each session's container gets a network of its own, which no other
# desktop can reach and the gateway reaches on the engine's own host (unix:// engines). A name:
# every desktop joins that engine network, where the relay reaches it (remote engines need
# one, routed to the gateways); desktops on it can reach each other's VNC ports, guarded only
# by each session's own password.
WORKGATE_CONTAINER_NETWORK = env_str("WORKGATE_CONTAINER_NETWORK")
# Session networks with no way out (no internet from the desktop; the Secure Browser then
# reaches nothing): for desktops that must only be seen through the gateway.
WORKGATE_CONTAINER_NETWORK_INTERNAL = env_bool("WORKGATE_CONTAINER_NETWORK_INTERNAL", False)
# Names this gateway's containers (label io.workgate.deployment): the reconciler removes only
# containers of its own deployment, so two deployments can share engines. By default, one
# derived from the database the gateways share (its host, port and name): two deployments left
# at the default would otherwise take each other's desktops for orphans.
_database = DATABASES["default"]
WORKGATE_CONTAINER_DEPLOYMENT = env_str(
    "WORKGATE_CONTAINER_DEPLOYMENT",
    "workgate-"
    + hashlib.sha256(
        f"{_database.get('HOST')}:{_database.get('PORT')}/{_database.get('NAME')}".encode()
    ).hexdigest()[:12],
)
WORKGATE_CONTAINER_PIDS_LIMIT = env_int("WORKGATE_CONTAINER_PIDS_LIMIT", 1024, minimum=32)
# The workspace's `storage` as the container's writable-layer size (--storage-opt size=): only
# where the engine's storage can enforce it (overlay on XFS with pquota, btrfs, zfs); where it
# cannot, the engine refuses every launch, so an operator turns this off knowingly.
WORKGATE_CONTAINER_STORAGE_LIMIT = env_bool("WORKGATE_CONTAINER_STORAGE_LIMIT", True)
WORKGATE_CONTAINER_RESOLUTION = env_str("WORKGATE_CONTAINER_RESOLUTION", "1280x800")
# How long a container may take from its start to its desktop's greeting.
WORKGATE_CONTAINER_READY_TIMEOUT = env_int("WORKGATE_CONTAINER_READY_TIMEOUT", 60, minimum=5)

# --- Web apps through the gateway (issue 21) -----------------------------------------------------

# The wildcard domain whose names <runtime-id>.<domain> are the apps' own origins (it may carry a
# port: "apps.example.com:8443"); empty: none, and apps are reached only under /apps/<runtime-id>/
# on the gateway's origin, for the workspaces that allow it. Under DEBUG (`make run`: Daphne on
# 127.0.0.1:8000) it defaults to apps.localhost:8000: browsers resolve every *.localhost name to
# loopback themselves and treat it as a secure context, so app origins work there with no DNS, no
# certificate and no setting; open the gateway itself as http://127.0.0.1:8000 (see below).
WORKGATE_APPS_DOMAIN = env_str("WORKGATE_APPS_DOMAIN", "apps.localhost:8000" if DEBUG else "")


def _hostname(value: str) -> str:
    """A host as ALLOWED_HOSTS or WORKGATE_APPS_DOMAIN names it, without its port or a final dot."""
    value = value.strip().lower()
    if value.startswith("["):
        return value.partition("]")[0] + "]"
    return (value.rpartition(":")[0] if value.count(":") == 1 else value).rstrip(".")


def _check_apps_domain(domain: str) -> None:
    """An app's scripts run with its origin and may set cookies for every parent of its name. An
    apps domain that is the gateway's own host, or under it, or that holds the gateway's host,
    would let an app read or plant the gateway's cookies (its session, its CSRF token): refused.
    `localhost` is left out: app origins under apps.localhost are for development, with the
    gateway opened as 127.0.0.1 (whose cookies no name shares)."""
    apps = _hostname(domain)
    if not apps:
        return
    if apps.count(".") < 1 or "*" in apps or apps.startswith("["):
        raise ImproperlyConfigured(
            f"WORKGATE_APPS_DOMAIN must be a DNS name with at least two labels, not {domain!r}"
        )
    gateway = {_hostname(host).lstrip(".") for host in ALLOWED_HOSTS if host.strip() != "*"}
    for host in sorted(gateway - {"", "localhost"}):
        if apps == host or apps.endswith("." + host) or host.endswith("." + apps):
            raise ImproperlyConfigured(
                f"WORKGATE_APPS_DOMAIN {domain!r} shares cookies with the gateway's own host "
                f"{host!r} (ALLOWED_HOSTS): give the apps a domain of their own, e.g. "
                "example-apps.com beside gateway.example.com"
            )


_check_apps_domain(WORKGATE_APPS_DOMAIN)


# Where web apps behind the gateway may be (issue 21): the CIDRs of the networks a web
# workspace's url may resolve into, checked at each launch, which pins the address for the
# session. Empty (the default): no web app is reached at all. Loopback is allowed only when
# listed here. Whatever is listed, these are never reached (app_proxy's deny list, in
# sessions_app/provisioners/web.py): link-local and cloud metadata (169.254.0.0/16, fe80::/10),
# 0.0.0.0/8, ::/128, multicast and broadcast, and the gateway's own database, Redis and
# container engines (their address and port).
WORKGATE_APP_UPSTREAM_NETWORKS = env_networks("WORKGATE_APP_UPSTREAM_NETWORKS")
for _network in WORKGATE_APP_UPSTREAM_NETWORKS:
    if _network.prefixlen < (8 if _network.version == 4 else 16):
        # 0.0.0.0/0 (or a few /1s) would make the gateway an open proxy to the internet.
        raise ImproperlyConfigured(
            f"WORKGATE_APP_UPSTREAM_NETWORKS: {_network} is wider than a /8 (IPv4) or /16 "
            "(IPv6): list the networks the apps are on, never the internet"
        )
# Seconds to connect to an app (then 504 upstream_timeout); seconds an HTTP request waits for
# the app's next bytes (aiohttp's sock_read: 504 before the answer starts, cut short after). It
# covers nothing else: a proxied WebSocket has no idle timeout here.
WORKGATE_APP_CONNECT_TIMEOUT = env_int("WORKGATE_APP_CONNECT_TIMEOUT", 10, minimum=1)
WORKGATE_APP_IDLE_TIMEOUT = env_int("WORKGATE_APP_IDLE_TIMEOUT", 300, minimum=5)
# The largest request body passed to an app, in bytes (413 beyond it); 1 GiB.
WORKGATE_APP_MAX_REQUEST_BODY = env_int("WORKGATE_APP_MAX_REQUEST_BODY", 1 << 30, minimum=0)
# The largest body of every other request (the gateway's own routes, and a request to an app that
# carries no cookie of that app signed here), in bytes: 413 before the server spools any of it.
WORKGATE_MAX_REQUEST_BODY = env_int("WORKGATE_MAX_REQUEST_BODY", 10 << 20, minimum=0)
# Seconds within which a request body must grow by at least 16 KiB/s, or the request is answered
# 408 and its connection closed (a body sent a byte at a time holds no connection for long).
WORKGATE_APP_BODY_TIMEOUT = env_int("WORKGATE_APP_BODY_TIMEOUT", 30, minimum=1)


def _development_app_signing_key() -> str:
    """An EC P-256 key kept in a private file, as the development secret key is."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    path = BASE_DIR / ".dev-app-signing-key"
    if not path.exists():
        pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path.touch(mode=0o600)
        path.write_bytes(pem)
    return path.read_text().strip()


# The PEM private key (EC P-256 or RSA >= 2048 bits) that signs the identity assertions apps
# receive (app_proxy/keys.py); WORKGATE_APP_PREVIOUS_SIGNING_KEY is still published while keys
# are rotated. Read from a file with WORKGATE_APP_SIGNING_KEY_FILE.
WORKGATE_APP_SIGNING_KEY = env_str("WORKGATE_APP_SIGNING_KEY")
WORKGATE_APP_PREVIOUS_SIGNING_KEY = env_str("WORKGATE_APP_PREVIOUS_SIGNING_KEY")
if not WORKGATE_APP_SIGNING_KEY:
    if DEBUG:
        WORKGATE_APP_SIGNING_KEY = _development_app_signing_key()
    elif WORKGATE_APPS_DOMAIN:
        raise ImproperlyConfigured(
            "WORKGATE_APP_SIGNING_KEY (or _FILE) is required with WORKGATE_APPS_DOMAIN: apps "
            "behind the gateway are told who is asking only in a signed assertion"
        )

# --- The assistant -----------------------------------------------------------------------------

WORKGATE_AI_PROVIDER = env_choice(
    "WORKGATE_AI_PROVIDER", "builtin", ("builtin", "openai", "anthropic")
)
OPENAI_BASE_URL = env_str("OPENAI_BASE_URL", "https://api.openai.com/v1")
OPENAI_API_KEY = env_str("OPENAI_API_KEY")
ANTHROPIC_BASE_URL = env_str("ANTHROPIC_BASE_URL", "https://api.anthropic.com")
ANTHROPIC_API_KEY = env_str("ANTHROPIC_API_KEY")
# The model of turns that name no assistant; empty: the provider's own default.
WORKGATE_AI_MODEL = env_str("WORKGATE_AI_MODEL")
# What one account can make the history hold: a turn's inputs together, in characters; the
# newest turns kept per user (older ones are deleted as new ones are stored); and the bytes one
# history listing answers with (whole turns, newest first; at least one).
WORKGATE_QANDA_MAX_INPUT_CHARS = env_int("WORKGATE_QANDA_MAX_INPUT_CHARS", 32000, minimum=500)
WORKGATE_HISTORY_KEEP_PER_USER = env_int("WORKGATE_HISTORY_KEEP_PER_USER", 1000, minimum=10)
WORKGATE_HISTORY_LIST_MAX_BYTES = env_int(
    "WORKGATE_HISTORY_LIST_MAX_BYTES", 1024 * 1024, minimum=64 * 1024
)
# Socket.IO heartbeat, in milliseconds as the Engine.IO open packet states it: the server pings
# every interval and drops a client that has not answered within the timeout.
WORKGATE_SOCKETIO_PING_INTERVAL_MS = env_int(
    "WORKGATE_SOCKETIO_PING_INTERVAL_MS", 25000, minimum=50
)
WORKGATE_SOCKETIO_PING_TIMEOUT_MS = env_int("WORKGATE_SOCKETIO_PING_TIMEOUT_MS", 20000, minimum=50)
# Signed-in Socket.IO sockets one account may hold at once, in all server processes together:
# each open one holds a Redis connection of the process serving it.
WORKGATE_SOCKETIO_MAX_SOCKETS_PER_USER = env_int(
    "WORKGATE_SOCKETIO_MAX_SOCKETS_PER_USER", 20, minimum=1
)

# --- API ---------------------------------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.AccessTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["core.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "core.exceptions.api_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(seconds=WORKGATE_ACCESS_TOKEN_TTL),
    "REFRESH_TOKEN_LIFETIME": timedelta(seconds=WORKGATE_REFRESH_TOKEN_TTL),
    "ALGORITHM": "HS256",
    "SIGNING_KEY": SECRET_KEY,
    "AUTH_HEADER_TYPES": ("Bearer",),
    "USER_ID_CLAIM": "user_id",
    "UPDATE_LAST_LOGIN": False,
    # Tokens carry a hash of the password hash they were issued under: changing a password
    # (an admin resetting a compromised account) ends every token issued before.
    "CHECK_REVOKE_TOKEN": True,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Workgate API",
    "DESCRIPTION": "Zero-trust workspace gateway: catalog, sessions, desktop tickets, audit, "
    "and the assistant stream.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # A token pasted into Swagger UI lives as long as its tab: persisted, it would sit in the
    # browser's localStorage for any script of this origin to read, after the tab is gone.
    "SWAGGER_UI_SETTINGS": {"persistAuthorization": False},
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "core.schema.add_bearer_alternative",
    ],
    "ENUM_NAME_OVERRIDES": {
        "WorkspaceStatusEnum": "workspaces.models.Workspace.Status",
        "SessionStatusEnum": "sessions_app.models.WorkspaceSession.Status",
        "HistoryStatusEnum": "streaming.models.History.Status",
    },
}

# --- Internationalisation, static files, logging ------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
if (BASE_DIR / "node_modules" / "@novnc").exists():
    STATICFILES_DIRS.append(("vendor/novnc", BASE_DIR / "node_modules" / "@novnc" / "novnc"))
# Static HTML gets the pages' Content Security Policy and may not be framed (core/csp.py).
WHITENOISE_ADD_HEADERS_FUNCTION = static_headers

LOGIN_URL = "/login"
LOGIN_REDIRECT_URL = "/"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        # Django logs every 4xx with its full path; ticket query strings must never reach a log.
        "django.request": {"level": "ERROR"},
        "django.channels.server": {"level": "WARNING"},
    },
}
