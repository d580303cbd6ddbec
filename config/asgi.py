"""ASGI entry point: web apps by Host or `/apps/<runtime-id>/` first (app_proxy/proxy.py), then
Django for HTTP (but Socket.IO polling); WebSockets pass the origin check and authentication
first."""

import gc
import os

from django.core.asgi import get_asgi_application
from django.core.signals import request_started
from django.db import close_old_connections, reset_queries

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

# Django must be set up before anything imports models (the routing modules below do).
django_asgi_app = get_asgi_application()

# Under ASGI, Django runs a request's synchronous code in a thread of its own, new for each
# request; at request_started that thread holds no database connection, so these two receivers
# have nothing to do, yet calling them costs every request (async views included) a thread and a
# hop to it. The request_finished receiver, which closes what a synchronous view opened in that
# thread, stays.
request_started.disconnect(reset_queries)
request_started.disconnect(close_old_connections)

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import re_path  # noqa: E402

from app_proxy.daphne import quiet_twisted_access_log  # noqa: E402
from app_proxy.proxy import AppRouter  # noqa: E402
from core.serving import autobahn_debug_dumps_unformatted  # noqa: E402
from core.websocket import OriginCheck  # noqa: E402
from sessions_app.provisioners.container import check_engine_configuration  # noqa: E402
from sessions_app.provisioners.local_desktop import refuse_unsafe_configuration  # noqa: E402
from socketio_server.routing import http_urlpatterns as socketio_http_routes  # noqa: E402
from socketio_server.routing import websocket_urlpatterns as socketio_routes  # noqa: E402
from vnc_proxy.routing import websocket_urlpatterns as relay_routes  # noqa: E402

refuse_unsafe_configuration()  # local desktops that would run as the gateway's own user
check_engine_configuration()  # a container engine's API reached without TLS
autobahn_debug_dumps_unformatted()  # a debug string per WebSocket connection, debug on or off

gateway = ProtocolTypeRouter(
    {
        # Socket.IO long-polling is a Channels consumer; every other request goes to Django.
        "http": URLRouter([*socketio_http_routes, re_path(r"", django_asgi_app)]),
        # The relay's ticket is its only credential: it is routed before the session and user
        # lookup, which would cost each opening a hop to Channels' one database thread.
        "websocket": OriginCheck(
            URLRouter(
                [*relay_routes, re_path(r"", AuthMiddlewareStack(URLRouter(socketio_routes)))]
            )
        ),
    }
)

# An app's own origin (a Host under WORKGATE_APPS_DOMAIN) and `/apps/<runtime-id>/` are the web-app
# proxy's, before any of the gateway's routing, checks or middleware; everything else, lifespan
# included, is the gateway's.
application = AppRouter(gateway)
quiet_twisted_access_log()  # Daphne's own access log stays; Twisted's duplicate line goes

# Everything loaded by now (Django, every app, their modules and settings) lives as long as the
# process: it is moved out of the cyclic collector's sight, so a full collection no longer walks
# it all while requests and frames wait (a pause of tens of milliseconds in a process this size).
gc.collect()
gc.freeze()
