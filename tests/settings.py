"""Test settings: the production module, with test values for what it needs from the environment.

PostgreSQL and Redis are the defaults here (the Makefile starts them); set DATABASE_URL or
REDIS_URL to point the suite elsewhere.
"""

import os

os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production-0123456789abcdef")
# A fixed Fernet key, so the suite can check ciphertext in the database.
os.environ.setdefault("WORKGATE_ENCRYPTION_KEY", "q5oZ3n8Yf0tq7bU4rQ1xwz6m0F4c2dXv9Hh8JkLmN0s=")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/workgate")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
os.environ.setdefault("ALLOWED_HOSTS", "testserver,localhost,127.0.0.1,[::1]")

from config.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast hashing in tests only
WHITENOISE_AUTOREFRESH = True  # serve from the finders; the suite never runs collectstatic
WHITENOISE_USE_FINDERS = True
