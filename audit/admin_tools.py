"""Shared pieces of the Django admin."""

from __future__ import annotations

import json

from django.contrib import admin
from django.db import transaction

from audit import services as audit
from core.network import Origin


class ViewOnlyAdmin(admin.ModelAdmin):
    """Records the admin may look at but never add, edit or delete: they change only through
    their services (and the audit log not at all)."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def _resource(obj) -> str:
    """`user:7`, `group:2`, `institution:3`: the model's name, as every service names what it
    audits (`workspace:ws-…`, `session:…`), so one search finds an account's entries."""
    return f"{obj._meta.model_name}:{obj.pk}"


def _changes(message) -> list | str:
    """Django's change message: what changed, by field and related-object name, never a value
    (so a password or a key typed into a form cannot reach the log). Lazy labels become text."""
    return json.loads(json.dumps(message, default=str)) if message else []


class AuditedAdmin(admin.ModelAdmin):
    """Every add, change and delete made through this admin goes on the audit chain, in the
    admin's own transaction, as `admin_add` / `admin_change` / `admin_delete`.

    For models whose writes have no service of their own (accounts, groups, the assistant's
    institutions, memberships, assistants and conversations); the workspace admin writes through
    the workspace services, which audit themselves.
    """

    def _record(self, request, action: str, resource: str, name: str, **details) -> None:
        audit.record(
            action=action,
            actor=request.user,
            resource=resource,
            details={"object": name, **details},
            origin=Origin.of(request),
        )

    # Django's admin calls these inside the transaction that saved the object.
    def log_addition(self, request, obj, message):
        self._record(request, "admin_add", _resource(obj), str(obj), changes=_changes(message))
        return super().log_addition(request, obj, message)

    def log_change(self, request, obj, message):
        self._record(request, "admin_change", _resource(obj), str(obj), changes=_changes(message))
        return super().log_change(request, obj, message)

    def save_formset(self, request, form, formset, change):
        """An inline's adds, changes and deletes get an entry each, naming the record they were
        made through (`via`): a membership added on its institution's page is an access right
        granted, and a search for `membership:<id>` must find it. A changed or deleted record is
        named as it was before the save (`was`, when that differs): a membership moved to
        another person names who lost it, too."""
        edited = {f.instance.pk: f for f in formset.initial_forms if f.has_changed()}
        before = formset.model._default_manager.filter(pk__in=[pk for pk in edited if pk])
        was = {obj.pk: str(obj) for obj in before}
        doomed = [
            (_resource(f.instance), was.get(f.instance.pk, str(f.instance)))
            for f in formset.deleted_forms
            if f.instance.pk is not None
        ]
        super().save_formset(request, form, formset, change)
        via = {"via": _resource(form.instance)}
        for obj in formset.new_objects:
            self._record(request, "admin_add", _resource(obj), str(obj), **via)
        for obj, fields in formset.changed_objects:
            inline_form = edited[obj.pk]
            labels = [str(inline_form.fields[name].label or name) for name in fields]
            details = {"changes": [{"changed": {"fields": labels}}], **via}
            if was.get(obj.pk, str(obj)) != str(obj):
                details["was"] = was[obj.pk]
            self._record(request, "admin_change", _resource(obj), str(obj), **details)
        for resource, name in doomed:
            self._record(request, "admin_delete", resource, name, **via)

    def _delete(self, request, obj) -> None:
        resource, name = _resource(obj), str(obj)
        _, deleted = obj.delete()
        # What the deletion took with it, by model: {"streaming.Membership": 3, ...}.
        self._record(request, "admin_delete", resource, name, deleted=deleted)

    def delete_model(self, request, obj):
        with transaction.atomic():
            self._delete(request, obj)

    def delete_queryset(self, request, queryset):
        # The "delete selected" action runs outside a transaction; the entries and the deletion
        # commit together or not at all.
        with transaction.atomic():
            for obj in queryset:
                self._delete(request, obj)
