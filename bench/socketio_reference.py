"""The anchor of bench/socketio_fanout.py: python-socketio's own ASGI server, scaled out through
its AsyncRedisManager, as its documentation sets it up. Served by Daphne like Workgate:

    SIO_REDIS_URL=redis://127.0.0.1:6379/10 daphne socketio_reference:application  (cwd bench/)

A client connects with `auth: {token}`; the token is not checked (the benchmark measures
delivery, not sign-in), and the socket's id is its room, which the emitter addresses.
"""

from __future__ import annotations

import os

import socketio

manager = socketio.AsyncRedisManager(os.environ["SIO_REDIS_URL"])
server = socketio.AsyncServer(async_mode="asgi", client_manager=manager, cors_allowed_origins=[])


@server.event
async def connect(sid, environ, auth):
    return bool(auth and auth.get("token"))


application = socketio.ASGIApp(server)
