"""The assistant's Socket.IO endpoint: WebSocket here, long-polling HTTP in http_urlpatterns."""

from django.urls import path

from socketio_server.consumers import PollingConsumer, WebsocketConsumer

websocket_urlpatterns = [path("socket.io/", WebsocketConsumer.as_asgi())]
http_urlpatterns = [path("socket.io/", PollingConsumer.as_asgi())]
