from __future__ import annotations

from django.conf import settings
from django.db import models


class AuditEntry(models.Model):
    """One append-only line of the audit log; `hash` covers the entry and the previous hash.

    The actor is kept as a plain reference plus an email snapshot: deleting a user must never
    rewrite the log (on PostgreSQL a trigger refuses every UPDATE and DELETE on this table).
    """

    created_at = models.DateTimeField(db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    actor_email = models.CharField(max_length=254, blank=True, default="")
    action = models.CharField(max_length=64, db_index=True)
    resource = models.CharField(max_length=200, blank=True, default="")
    details = models.JSONField(default=dict, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=512, blank=True, default="")
    success = models.BooleanField(default=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "audit entries"
        indexes = [
            models.Index(fields=["actor", "-id"], name="audit_actor_recent"),
            models.Index(fields=["resource", "-id"], name="audit_resource_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.action} {self.resource}"
