"""One Redis connection pool, and one client, per process for Django's cache (rate limits).

Django keeps a cache object per request context, and its Redis backend builds a new connection
pool for each: under Daphne every request opened, greeted (CLIENT SETINFO) and dropped its own
Redis connection, several milliseconds on each rate-limited request. This pool class hands every
cache object the same pool for the same URL and options, so connections are reused.

The backend also builds a new `redis.Redis` for every cache call, and redis-py fills a table of
some 170 response callbacks for each: 0.3 ms of CPU per rate-limited request, measured (a
desktop ticket costs two calls). `RedisCache` keeps one client per pool instead; a client over a
pool is safe to share between threads.

Its `incr` (every rate-limited request past the first in a window) asked Redis twice, EXISTS and
then INCRBY: a round trip more than needed, and a key that expired in between came back as a
counter with no expiry (left in Redis for good). It is one atomic script here.
"""

from __future__ import annotations

import threading

import redis
from django.core.cache.backends import redis as django_redis


class SharedConnectionPool(redis.ConnectionPool):
    _shared: dict[tuple, redis.ConnectionPool] = {}
    _lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str, **kwargs) -> redis.ConnectionPool:
        key = (url, tuple(sorted((name, repr(value)) for name, value in kwargs.items())))
        with cls._lock:
            pool = cls._shared.get(key)
            if pool is None:
                pool = cls._shared[key] = redis.ConnectionPool.from_url(url, **kwargs)
            return pool


_INCR_EXISTING = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
return redis.call('INCRBY', KEYS[1], ARGV[1])
"""


class _SharedClientCacheClient(django_redis.RedisCacheClient):
    def get_client(self, key=None, *, write=False):
        pool = self._get_connection_pool(write)
        client = getattr(pool, "workgate_client", None)
        if client is None:  # two threads may both build one; either is as good
            client = pool.workgate_client = self._client(connection_pool=pool)
        return client

    def incr(self, key, delta):
        value = self.get_client(key, write=True).eval(_INCR_EXISTING, 1, key, delta)
        if value is None:
            raise ValueError(f"Key '{key}' not found.")
        return value


class RedisCache(django_redis.RedisCache):
    """Django's Redis cache with one client per connection pool (see the module's docstring)."""

    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = _SharedClientCacheClient
