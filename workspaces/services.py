"""Changing the workspace catalog (admins only; every change audited in its own transaction)."""

from __future__ import annotations

from collections.abc import Mapping

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from rest_framework.exceptions import ValidationError

from audit import services as audit
from core.network import Origin
from workspaces.defaults import insert_default_workspaces
from workspaces.models import Workspace
from workspaces.selectors import workspace_named
from workspaces.signals import workspaces_removing

# What an administrator may set, in the order forms and the API present it.
EDITABLE_FIELD_ORDER = (
    "name",
    "type",
    "description",
    "image_url",
    "status",
    "cpu",
    "memory",
    "storage",
    "url",
    "connection_type",
    "requires_netbird",
    "icon",
    "provisioner",
    "vnc_target",
    "vnc_tls_verify",
    "vnc_username",
    "vnc_secret",
    "rfb_password",
    "container_image",
    "container_protocol",
    "container_port",
    "container_environment",
    "container_capabilities",
    "app_credential_header",
    "app_credential",
    "app_path_prefix_allowed",
    "groups",
)
EDITABLE_FIELDS = frozenset(EDITABLE_FIELD_ORDER)


def _checked(data: Mapping) -> dict:
    unknown = set(data) - EDITABLE_FIELDS
    if unknown:
        raise ValueError(f"not editable workspace fields: {sorted(unknown)}")
    return dict(data)


def _validate(workspace: Workspace, *, exclude: list[str] | None = None) -> None:
    """The model's own rules, so every caller (API, Django admin, shell) meets the same ones."""
    try:
        workspace.full_clean(exclude=exclude)
    except DjangoValidationError as exc:
        raise ValidationError(exc.message_dict) from exc


def _locked(workspace_id: str) -> Workspace:
    return workspace_named(Workspace.objects.select_for_update(), workspace_id)


def _group_names(groups) -> list[str]:
    return sorted({group.name for group in groups})


def workspace_create(*, actor, data: Mapping, origin: Origin) -> Workspace:
    """`data["groups"]`: the groups whose members may use it (none: everyone)."""
    data = _checked(data)
    groups = list(data.pop("groups", []))
    workspace = Workspace(**data)
    _validate(workspace)
    with transaction.atomic():
        # force_insert: a generated id that collided would otherwise overwrite the other row.
        workspace.save(force_insert=True)
        workspace.groups.set(groups)
        audit.record(
            action="create_workspace",
            actor=actor,
            resource=f"workspace:{workspace.id}",
            details={
                "name": workspace.name,
                "type": workspace.type,
                "groups": _group_names(groups),
            },
            origin=origin,
        )
    return workspace


def workspace_update(*, actor, workspace_id: str, data: Mapping, origin: Origin) -> Workspace:
    """Apply a partial update; the audit entry names the fields that changed, never values,
    except who may use it (the groups before and after: an access change)."""
    data = _checked(data)
    groups = data.pop("groups", None)
    details: dict = {}
    with transaction.atomic():
        workspace = _locked(workspace_id)
        columns = [name for name, value in data.items() if getattr(workspace, name) != value]
        for name in columns:
            setattr(workspace, name, data[name])
        if columns:
            _validate(workspace, exclude=["id"])
        changed = sorted(columns)
        if groups is not None:
            before, after = _group_names(workspace.groups.all()), _group_names(groups)
            if before != after:
                workspace.groups.set(groups)
                changed = sorted([*changed, "groups"])
                details["groups"] = {"before": before, "after": after}
        if changed:
            workspace.save(update_fields=[*columns, "updated_at"])
        audit.record(
            action="update_workspace",
            actor=actor,
            resource=f"workspace:{workspace.id}",
            details={"changed": changed, **details},
            origin=origin,
        )
    return workspace


def _removing(workspace_ids: list[str], *, reset: bool, actor, origin: Origin) -> int:
    """Tell the apps above that these locked workspaces are about to go (sessions_app ends their
    live sessions, in this transaction); how many sessions ended."""
    responses = workspaces_removing.send(
        sender=Workspace, workspace_ids=workspace_ids, reset=reset, actor=actor, origin=origin
    )
    return sum(count for _, count in responses)


def workspace_delete(*, actor, workspace_id: str, origin: Origin) -> None:
    """Delete one workspace, ending its live sessions first; session history keeps a snapshot."""
    with transaction.atomic():
        workspace = _locked(workspace_id)
        terminated = _removing([workspace.id], reset=False, actor=actor, origin=origin)
        workspace.delete()
        audit.record(
            action="delete_workspace",
            actor=actor,
            resource=f"workspace:{workspace_id}",
            details={"name": workspace.name, "terminated_sessions": terminated},
            origin=origin,
        )


def workspaces_reset(*, actor, origin: Origin) -> int:
    """End every live session, delete every workspace, recreate the defaults; their count."""
    with transaction.atomic():
        # Lock the whole catalog before the first audit entry takes the chain lock, so a launch
        # holding one workspace row while it waits for the chain cannot deadlock with us.
        ids = list(
            Workspace.objects.select_for_update().order_by("id").values_list("id", flat=True)
        )
        terminated = _removing(ids, reset=True, actor=actor, origin=origin)
        Workspace.objects.all().delete()
        count = insert_default_workspaces()
        audit.record(
            action="reset_workspaces",
            actor=actor,
            resource="workspace:*",
            details={"deleted": len(ids), "created": count, "terminated_sessions": terminated},
            origin=origin,
        )
    return count
