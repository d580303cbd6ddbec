"""The ground floor: what every app may import, and which imports no app of this project.

Environment readers, the one error shape and its exception handler, permissions, where a
request came from (the network and trusted-proxy helpers), rate limiting, encryption at rest,
request input and parsers, pagination, the OpenAPI hooks, security headers, the WebSocket
origin check, compiled queries and the one way async code reaches the database. `config/`
(settings, URLs, ASGI and page wiring) sits on top of every app.
"""
