from django.urls import path

from vnc_proxy.consumers import relay

RELAY_PATH = "api/agents/workspace/vnc/"

websocket_urlpatterns = [
    path(f"{RELAY_PATH}<str:workspace_id>", relay, name="vnc-relay"),
]
