"""Django's Redis cache (the rate-limit counters, django-redis) as configured with REDIS_URL: one
connection pool per process, whatever number of cache objects Django builds (one per request
context)."""

from __future__ import annotations

import threading

import pytest
from django.conf import settings
from django.core.cache import caches

pytestmark = pytest.mark.skipif(
    settings.CACHES["default"]["BACKEND"] != "django_redis.cache.RedisCache",
    reason="the Redis cache is configured only with REDIS_URL",
)


def test_every_cache_object_shares_one_connection_pool_and_one_count():
    seen = []

    def in_another_context():
        cache = caches.create_connection("default")  # what Django does per request context
        seen.append((cache, cache.client.get_client(write=True).connection_pool))
        cache.add("shared-counter", 0, timeout=30)
        cache.incr("shared-counter")

    caches["default"].delete("shared-counter")
    threads = [threading.Thread(target=in_another_context) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len({id(cache) for cache, _ in seen}) == 4
    assert len({id(pool) for _, pool in seen}) == 1
    assert caches["default"].get("shared-counter") == 4


def test_a_counter_counts_in_one_step_and_keeps_its_expiry():
    cache = caches["default"]
    cache.delete("window")
    cache.add("window", 1, timeout=30)

    assert cache.incr("window") == 2
    assert cache.incr("window", 3) == 5
    client = cache.client.get_client(write=True)
    assert 0 < client.ttl(cache.make_key("window")) <= 30


def test_a_counter_that_expired_is_not_brought_back_without_an_expiry():
    cache = caches["default"]
    cache.delete("window")

    with pytest.raises(ValueError):
        cache.incr("window")

    assert cache.get("window") is None  # nor created, as INCRBY alone would (with no expiry)
