from django.apps import AppConfig


class SocketioServerConfig(AppConfig):
    name = "socketio_server"
    verbose_name = "Socket.IO server"

    def ready(self) -> None:
        from socketio_server import sink
        from streaming.delivery import socket_transport_install

        socket_transport_install(sink.socket_sink)
