from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from core.env import env_bool, env_int, env_list, env_networks, env_rate, env_str
from tests.support.processes import import_fresh

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("raw", "expected"), [("1", True), ("yes", True), ("off", False), ("", False)]
)
def test_env_bool_reads_the_usual_spellings(monkeypatch, raw, expected):
    monkeypatch.setenv("WG_FLAG", raw)
    assert env_bool("WG_FLAG") is expected


@pytest.mark.parametrize(
    ("reader", "raw"),
    [
        (lambda: env_bool("WG_X"), "maybe"),
        (lambda: env_int("WG_X", 1), "ten"),
        (lambda: env_int("WG_X", 1, minimum=60), "5"),
        (lambda: env_networks("WG_X"), "10.0.0.0/33"),
        (lambda: env_networks("WG_X"), "not-a-network"),
        (lambda: env_rate("WG_X", "20/m"), "twenty"),
        (lambda: env_rate("WG_X", "20/m"), "20/fortnight"),
        (lambda: env_rate("WG_X", "20/m"), "0/m"),
        (lambda: env_rate("WG_X", "20/m"), "00/m"),
        (lambda: env_rate("WG_X", "20/m"), "10/0m"),  # no period: every request would fail
    ],
)
def test_malformed_values_are_refused_naming_the_variable(monkeypatch, reader, raw):
    monkeypatch.setenv("WG_X", raw)
    with pytest.raises(ImproperlyConfigured, match="WG_X"):
        reader()


@pytest.mark.parametrize("raw", ["20/m", "5/10s", "100/h", "10/15m", "1/d"])
def test_a_rate_is_a_count_per_one_or_more_units_of_time(monkeypatch, raw):
    monkeypatch.setenv("WG_RATE", raw)
    assert env_rate("WG_RATE", "20/m") == raw


def test_secrets_can_come_from_a_file(monkeypatch, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("from-a-file\n")
    monkeypatch.delenv("WG_SECRET", raising=False)
    monkeypatch.setenv("WG_SECRET_FILE", str(secret))
    assert env_str("WG_SECRET") == "from-a-file"


def test_lists_and_networks_are_comma_separated(monkeypatch):
    monkeypatch.setenv("WG_LIST", "a.example, b.example,,")
    monkeypatch.setenv("WG_NETS", "10.0.0.0/8,::1/128")
    assert env_list("WG_LIST") == ["a.example", "b.example"]
    assert [str(n) for n in env_networks("WG_NETS")] == ["10.0.0.0/8", "::1/128"]


def _import_settings(**env) -> subprocess.CompletedProcess:
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("WORKGATE_", "DATABASE", "REDIS"))
    }
    clean.pop("SECRET_KEY", None)
    clean.pop("DEBUG", None)
    clean.update(env)
    return import_fresh("config.settings", clean)


def test_settings_refuse_debug_maybe():
    result = _import_settings(DEBUG="maybe", SECRET_KEY="x" * 50)
    assert result.returncode != 0
    assert "DEBUG must be one of" in result.stderr


def test_a_secret_key_is_required_when_debug_is_off():
    result = _import_settings()
    assert result.returncode != 0
    assert "SECRET_KEY is required when DEBUG is off" in result.stderr


def test_an_encryption_key_is_required_when_debug_is_off():
    result = _import_settings(SECRET_KEY="x" * 50)
    assert result.returncode != 0
    assert "WORKGATE_ENCRYPTION_KEY is required" in result.stderr


def test_a_bad_encryption_key_is_refused():
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='config.settings'; "
            "django.setup(); from core.crypto import encrypt; encrypt('x')",
        ],
        cwd=ROOT,
        env={**_clean_env(), "SECRET_KEY": "x" * 50, "WORKGATE_ENCRYPTION_KEY": "short"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "not a Fernet key" in result.stderr


def _clean_env() -> dict:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("WORKGATE_", "DATABASE", "REDIS", "SECRET_KEY", "DEBUG"))
    }


def test_options_in_the_database_url_are_kept_beside_the_pool():
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, config.settings as s; print(json.dumps(s.DATABASES['default']))",
        ],
        cwd=ROOT,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith(("WORKGATE_", "DATABASE"))},
            "DEBUG": "1",
            "DATABASE_URL": "postgres://u@db.example.com/wg?sslmode=verify-full&connect_timeout=5",
            "WORKGATE_DB_POOL_SIZE": "12",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )

    database = json.loads(result.stdout)
    assert database["OPTIONS"] == {
        "sslmode": "verify-full",
        "connect_timeout": 5,
        "pool": {"min_size": 2, "max_size": 12, "timeout": 10},
    }
    assert database["CONN_HEALTH_CHECKS"] is True
