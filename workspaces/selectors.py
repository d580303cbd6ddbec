"""Reading the workspace catalog."""

from __future__ import annotations

from django.db import transaction
from django.db.models import Q, QuerySet

from config.exceptions import NotFound
from workspaces.defaults import insert_default_workspaces
from workspaces.models import Workspace


def workspace_list() -> QuerySet[Workspace]:
    """The whole catalog, oldest first; an empty catalog is first filled with the five defaults."""
    if not Workspace.objects.exists():
        with transaction.atomic():
            insert_default_workspaces()
    return Workspace.objects.order_by("created_at", "id")


def workspace_get(workspace_id: str) -> Workspace:
    workspace_id = str(workspace_id)
    if "\x00" in workspace_id:
        # No id holds a NUL, and PostgreSQL refuses one in a query: answer without asking it.
        raise NotFound("Workspace not found", "not_found")
    workspace = Workspace.objects.filter(pk=workspace_id).first()
    if workspace is None:
        raise NotFound("Workspace not found", "not_found")
    return workspace


# A catalog search of more words than this matches nothing anyway; the cap keeps a pasted essay
# (or a model's) from building a query whose cost grows with the square of its length.
MAX_SEARCH_WORDS = 20


def workspace_search(query: str) -> QuerySet[Workspace]:
    """Workspaces matching every word of `query` in their id, name, description or type
    (its first MAX_SEARCH_WORDS distinct words)."""
    workspaces = workspace_list()
    for word in list(dict.fromkeys((query or "").split()))[:MAX_SEARCH_WORDS]:
        workspaces = workspaces.filter(
            Q(id__icontains=word)
            | Q(name__icontains=word)
            | Q(description__icontains=word)
            | Q(type__iexact=word)
            | Q(connection_type__iexact=word)
        )
    return workspaces
