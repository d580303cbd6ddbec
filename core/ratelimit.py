"""Rate limits on top of django-ratelimit's counters, answered as 429 with Retry-After.

With REDIS_URL set the counters live in Redis, so every server process shares them.
"""

from __future__ import annotations

import ipaddress

from django_ratelimit.core import get_usage
from rest_framework.exceptions import Throttled

from core.network import client_ip


class RateLimited(Throttled):
    default_detail = "Too many requests; try again later."
    default_code = "rate_limited"


def client_key(request) -> str:
    return address_key(client_ip(request))


def address_key(ip: str) -> str:
    """A client address as a rate limit counts it: an IPv4 address, or an IPv6 address's /64.
    One host usually holds a whole /64 and may send from any address in it, so counting
    addresses would give it 2^64 budgets."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if address.version == 6:
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network((address, 64), strict=False))
    return ip


def key_by_ip(group, request) -> str:
    return client_key(request)


def key_by_user(group, request) -> str:
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return f"user:{user.pk}"
    return f"ip:{client_key(request)}"


def over_limit(*, group: str, rate: str, key: str) -> int | None:
    """Count one attempt against `key` (say "user:7") in `group`, where there is no request to
    key it by (a service); the seconds to wait when that is over `rate`, else None."""
    return _wait(_usage(group=group, rate=rate, key=key, increment=True))


def _usage(*, group: str, rate: str, key: str, increment: bool) -> dict | None:
    return get_usage(
        None, group=group, key=lambda _group, _request: key, rate=rate, increment=increment
    )


def failures_over_limit(*, group: str, rate: str, key: str) -> int | None:
    """Count one attempt at something limited by how often it fails (a password), before it is
    checked, so that attempts in flight together (in any number of processes) cannot go past
    the limit; `attempt_succeeded` hands the attempt back once it turns out right. The seconds
    to wait when the attempts not handed back are over `rate`, else None."""
    attempts = _usage(group=group, rate=rate, key=key, increment=True)
    if not attempts or not attempts["should_limit"]:
        return None
    # django-ratelimit answers limit 0 when the cache failed: then the limit holds (fail closed).
    if attempts["limit"]:
        passed = _usage(group=_passed(group), rate=rate, key=key, increment=False)
        if attempts["count"] - (passed["count"] if passed else 0) <= attempts["limit"]:
            return None
    return _wait(attempts)


def attempt_succeeded(*, group: str, rate: str, key: str) -> None:
    """Hand back the attempt `failures_over_limit` counted: it did not fail."""
    _usage(group=_passed(group), rate=rate, key=key, increment=True)


def _passed(group: str) -> str:
    # The same key and rate, so the same window as the group's attempts.
    return f"{group}:passed"


def enforce(request, *, group: str, rate: str, key=key_by_user) -> None:
    """Count this request against `group`, raising 429 once the rate is exceeded."""
    wait = _wait(get_usage(request, group=group, key=key, rate=rate, increment=True))
    if wait is not None:
        raise RateLimited(wait=wait)


def _wait(usage: dict | None) -> int | None:
    """The whole seconds until a counter over its rate resets; None when it is not over."""
    if usage and usage["should_limit"]:
        # time_left counts to the window's last whole second, which is still in the window:
        # the next one starts a second later.
        return max(1, usage["time_left"] + 1)
    return None
