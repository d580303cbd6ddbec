"""A Socket.IO v5 / Engine.IO v4 server on Channels, shared by every server process.

protocol: the wire format; store: sessions and sockets in Redis (or memory); connection: what a
client's packets do; consumers: the long-polling and WebSocket transports; sink: a turn's events
delivered to a socket through the channel layer.
"""
