"""Workspace sessions as a client starts them: a launch through the API, and the NetBird overlay
address a tunnelled client comes from."""

from __future__ import annotations

OVERLAY_IP = "100.64.0.7"  # inside the default WORKGATE_TRUSTED_NETWORKS (the NetBird overlay)


def launch(client, workspace_id: str):
    return client.post(f"/api/workspaces/{workspace_id}/launch", HTTP_USER_AGENT="pytest-agent/1")
