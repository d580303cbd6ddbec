"""One Redis connection pool per process for Django's cache (rate-limit counters).

Django keeps a cache object per request context, and its Redis backend builds a new connection
pool for each: under Daphne every request opened, greeted (CLIENT SETINFO) and dropped its own
Redis connection, several milliseconds on each rate-limited request. This pool class hands every
cache object the same pool for the same URL and options, so connections are reused.
"""

from __future__ import annotations

import threading

import redis


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
