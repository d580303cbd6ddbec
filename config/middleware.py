"""Django's middleware, run on the event loop for requests served over ASGI.

Under Daphne every request is async, and Django runs each hook of a `MiddlewareMixin`
middleware through `sync_to_async`: a thread hop for every process_request, process_view and
process_response, about a dozen per request with the stack in settings.MIDDLEWARE, and a
sync-only middleware (WhiteNoise, ours) costs two more and a thread of its own per request.
On the assistant's stream (bench/sse_load.py) those hops would be most of what a request costs
before the view runs.

Most of these hooks only compute (headers, lazy objects, a cookie), so here they run inline on
the event loop. A hook runs in a thread, exactly as Django would run it, whenever it may touch
the database this time: saving a modified session, storing messages, serving a static file.
"""

from __future__ import annotations

import secrets

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.contrib.auth import middleware as auth
from django.contrib.messages import middleware as messages
from django.contrib.sessions import middleware as sessions
from django.middleware import clickjacking, common, csrf, security
from django.utils.cache import add_never_cache_headers
from django.utils.deprecation import MiddlewareMixin
from whitenoise import middleware as whitenoise

from core.csp import CONTENT_SECURITY_POLICY


class OnTheLoop:
    """For a MiddlewareMixin whose hooks only compute: call them inline in async mode.

    `response_needs_thread` names the cases where process_response may do I/O; those run in a
    thread as Django would run them.
    """

    def response_needs_thread(self, request, response) -> bool:
        return False

    async def __acall__(self, request):
        response = None
        if hasattr(self, "process_request"):
            response = self.process_request(request)
        response = response or await self.get_response(request)
        if hasattr(self, "process_response"):
            if self.response_needs_thread(request, response):
                response = await sync_to_async(self.process_response, thread_sensitive=True)(
                    request, response
                )
            else:
                response = self.process_response(request, response)
        return response


class SecurityMiddleware(OnTheLoop, security.SecurityMiddleware):
    pass


class CommonMiddleware(OnTheLoop, common.CommonMiddleware):
    pass


class SessionMiddleware(OnTheLoop, sessions.SessionMiddleware):
    # process_request only makes a lazy SessionStore; process_response saves a session that
    # changed (or every session, if configured), which is a database write.
    def response_needs_thread(self, request, response) -> bool:
        session = getattr(request, "session", None)
        return session is not None and (session.modified or settings.SESSION_SAVE_EVERY_REQUEST)


class CsrfViewMiddleware(OnTheLoop, csrf.CsrfViewMiddleware):
    # The token lives in a cookie (CSRF_USE_SESSIONS is off), so no hook reads the database.
    def __init__(self, get_response):
        super().__init__(get_response)
        if self.async_mode:  # Django awaits a coroutine process_view inline, else hops
            check = self.process_view

            async def process_view(request, callback, callback_args, callback_kwargs):
                return check(request, callback, callback_args, callback_kwargs)

            self.process_view = process_view


class AuthenticationMiddleware(OnTheLoop, auth.AuthenticationMiddleware):
    # request.user stays lazy: it is loaded by whoever first reads it, in that code's thread.
    pass


class MessageMiddleware(OnTheLoop, messages.MessageMiddleware):
    # Storing messages reads and writes the session: only when messages were added or read.
    def response_needs_thread(self, request, response) -> bool:
        storage = getattr(request, "_messages", None)
        return storage is not None and (storage.used or storage.added_new)


class XFrameOptionsMiddleware(OnTheLoop, clickjacking.XFrameOptionsMiddleware):
    pass


class NeverStoredMiddleware(OnTheLoop, MiddlewareMixin):
    """Nothing Workgate renders is kept by a browser or a proxy: a page of someone's sessions or
    of the audit log (shown again by Back after signing out on a shared machine), a token, a
    ticket, an authenticator secret. A response that says nothing of caching gets Django's
    never-cache headers. Static files are answered before this, by WhiteNoise, with their own."""

    def process_response(self, request, response):
        if not response.has_header("Cache-Control"):
            add_never_cache_headers(response)
        return response


class ContentSecurityPolicyMiddleware(OnTheLoop, MiddlewareMixin):
    """CONTENT_SECURITY_POLICY on every HTML page, with a fresh nonce per request for the few
    inline scripts a template marks with `nonce="{{ request.csp_nonce }}"`. Should an escaping
    mistake ever let markup into a page, the browser still runs no script it brings."""

    def process_request(self, request):
        request.csp_nonce = secrets.token_urlsafe(16)

    def process_response(self, request, response):
        html = response.get("Content-Type", "").startswith("text/html")
        if html and not response.has_header("Content-Security-Policy"):
            policy = CONTENT_SECURITY_POLICY.format(nonce=request.csp_nonce)
            response["Content-Security-Policy"] = policy
        return response


class WhiteNoiseMiddleware(whitenoise.WhiteNoiseMiddleware):
    """WhiteNoise, which is sync-only, with an async mode: requests for anything but a static
    file pass straight through; a static file is opened and served from a thread."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response=None, settings=settings):
        super().__init__(get_response, settings=settings)
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.async_mode:
            return self.__acall__(request)
        return super().__call__(request)

    async def __acall__(self, request):
        if self.autorefresh:  # development: looks on disk for every request
            static_file = await sync_to_async(self.find_file)(request.path_info)
        else:
            static_file = self.files.get(request.path_info)
        if static_file is not None:
            return await sync_to_async(self.serve)(static_file, request)
        return await self.get_response(request)
