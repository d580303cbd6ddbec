"""Workspaces for page tests: a web workspace that launches anywhere (no desktop, no tunnel)."""

from __future__ import annotations

from workspaces.models import Workspace


def make_web_workspace(**fields) -> Workspace:
    defaults = {
        "name": "Wiki",
        "type": "web",
        "description": "The team wiki",
        "url": "https://wiki.example.com/",
        "connection_type": "web",
        "requires_netbird": False,
    }
    return Workspace.objects.create(**{**defaults, **fields})
