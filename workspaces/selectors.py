"""Reading the workspace catalog."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import BooleanField, Q, QuerySet
from django.db.models.expressions import RawSQL

from core.exceptions import NotFound
from core.permissions import admin_may
from core.queries import queryable
from workspaces.defaults import insert_default_workspaces
from workspaces.models import Workspace, WorkspaceGroup


def workspace_list() -> QuerySet[Workspace]:
    """The whole catalog, oldest first; an empty catalog is first filled with the five defaults."""
    _fill_if_empty()
    return Workspace.objects.order_by("created_at", "id")


def _fill_if_empty() -> bool:
    """Fill an empty catalog (a new install's) with the five defaults; whether it was empty."""
    if Workspace.objects.exists():
        return False
    with transaction.atomic():
        insert_default_workspaces()
    return True


def usable_by(user, *, workspace_column: tuple[str, str]) -> RawSQL:
    """The condition, on rows whose `workspace_column` (table, column) holds a workspace id,
    that `user` may see and launch that workspace: it is open to everyone (no groups) or shared
    with a group `user` is in. Administrators are no exception: managing the catalog is not
    using it (an administrator adds a group of theirs to use a restricted workspace). A row
    with no workspace (NULL) passes: a session whose workspace is gone has nothing to withdraw.

    Two correlated EXISTS probes on indexed columns, written as SQL once: the ORM's Exists
    would cost a millisecond of CPU to compile on every desktop ticket. With no account (no
    id) it matches only open workspaces."""
    quote = connection.ops.quote_name
    shared = quote(WorkspaceGroup._meta.db_table)
    member = quote(get_user_model().groups.through._meta.db_table)
    column = f"{quote(workspace_column[0])}.{quote(workspace_column[1])}"
    # Only quoted table and column names from the models are interpolated; the id is a
    # parameter.
    sql = (
        f"(NOT EXISTS (SELECT 1 FROM {shared} s WHERE s.workspace_id = {column})"  # noqa: S608
        f" OR EXISTS (SELECT 1 FROM {shared} s JOIN {member} m ON m.group_id = s.group_id"
        f" WHERE s.workspace_id = {column} AND m.user_id = %s))"
    )
    return RawSQL(sql, [user.pk], output_field=BooleanField())  # noqa: S611


def _usable_workspace_rows(user) -> RawSQL:
    return usable_by(user, workspace_column=(Workspace._meta.db_table, "id"))


def workspaces_for(user) -> QuerySet[Workspace]:
    """The catalog as `user` may use it (usable_by), seeded when empty."""
    return workspace_list().filter(_usable_workspace_rows(user))


def manages_catalog(user) -> bool:
    """An administrator who may view workspaces: sees every one, and who may use it."""
    return admin_may(user, "workspaces.view_workspace")


def workspaces_visible_to(user) -> QuerySet[Workspace]:
    """The catalog API's list: everything, with who may use each, to an administrator who
    manages the catalog; to anyone else, what they may use."""
    if manages_catalog(user):
        return workspace_list().prefetch_related("groups")
    return workspaces_for(user)


def workspace_granted(user, workspace_id: str | None) -> bool:
    """Whether `user` may use the workspace `workspace_id` (see usable_by). None, a session's
    workspace that is gone, passes as in usable_by: there is nothing left to withdraw."""
    if workspace_id is None:
        return True
    return Workspace.objects.filter(_usable_workspace_rows(user), pk=workspace_id).exists()


def access_workspace(user, workspace_id: str, *, manage: bool = False) -> Workspace:
    """One workspace as `user` may see it: one they may use, or with `manage`, any to an
    administrator who manages the catalog. Unknown and not shared answer the same 404, so
    restricted ids cannot be probed."""
    workspace = workspace_get(workspace_id)
    if manage and manages_catalog(user):
        return workspace
    if not workspace_granted(user, workspace.pk):
        raise NotFound("Workspace not found", "not_found")
    return workspace


def workspace_get(workspace_id: str) -> Workspace:
    try:
        return workspace_named(Workspace.objects.all(), workspace_id)
    except NotFound:
        # A new install whose catalog nobody has listed yet: fill it as the listing would, so
        # a client that launches a default by its id first finds it.
        if not _fill_if_empty():
            raise
        return workspace_named(Workspace.objects.all(), workspace_id)


def workspace_named(workspaces: QuerySet[Workspace], workspace_id: str) -> Workspace:
    """The workspace `workspace_id` among `workspaces`, or the 404 of an unknown id."""
    workspace = None
    if queryable(workspace_id):
        workspace = workspaces.filter(pk=str(workspace_id)).first()
    if workspace is None:
        raise NotFound("Workspace not found", "not_found")
    return workspace


# A catalog search of more words than this matches nothing anyway; the cap keeps a pasted essay
# (or a model's) from building a query whose cost grows with the square of its length.
MAX_SEARCH_WORDS = 20


def workspace_search(query: str, *, user) -> QuerySet[Workspace]:
    """The workspaces `user` may use matching every word of `query` in their id, name,
    description or type (its first MAX_SEARCH_WORDS distinct words)."""
    workspaces = workspaces_for(user)
    for word in list(dict.fromkeys((query or "").split()))[:MAX_SEARCH_WORDS]:
        workspaces = workspaces.filter(
            Q(id__icontains=word)
            | Q(name__icontains=word)
            | Q(description__icontains=word)
            | Q(type__iexact=word)
            | Q(connection_type__iexact=word)
        )
    return workspaces
