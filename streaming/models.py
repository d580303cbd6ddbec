"""The assistant's data: institutions and their members, assistants, conversations, and turns."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class Institution(models.Model):
    """A "digital twin": a group of users sharing assistants and display policy."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=200)
    display_thinking_details = models.BooleanField(
        default=True,
        help_text="Stream the model's reasoning to members and keep it in their history",
    )
    display_tool_execution = models.BooleanField(
        default=True, help_text="Stream tool calls and their results to members"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    class Role(models.TextChoices):
        MEMBER = "member"
        ADMIN = "admin"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    institution = models.ForeignKey(
        Institution, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "institution"], name="one_membership")
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.institution} ({self.role})"


class Assistant(models.Model):
    """Instructions plus the provider and model that answer with them."""

    class Provider(models.TextChoices):
        BUILTIN = "builtin"
        OPENAI = "openai"
        ANTHROPIC = "anthropic"

    class Status(models.TextChoices):
        ACTIVE = "active"
        UNPUBLISHED = "unpublished"  # usable by its owner only, while it is being written
        INACTIVE = "inactive"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    instructions = models.TextField(blank=True, default="")
    provider = models.CharField(max_length=16, choices=Provider.choices)
    model = models.CharField(
        max_length=200, blank=True, default="", help_text="Empty: the provider's default model"
    )
    thinking_budget_tokens = models.PositiveIntegerField(
        default=0,
        help_text="Anthropic: tokens the model may spend thinking (0 = off, at least 1024)",
    )
    institution = models.ForeignKey(
        Institution,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="assistants",
        help_text="Empty: usable by everyone",
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="assistants",
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.provider})"


class Conversation(models.Model):
    """What the API calls a "course": a named thread of one user's turns."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations"
    )
    course_id = models.CharField(max_length=128)
    course_name = models.CharField(max_length=200, blank=True, default="")
    institution = models.ForeignKey(
        Institution, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    assistant = models.ForeignKey(
        Assistant, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        constraints = [
            models.UniqueConstraint(fields=["user", "course_id"], name="one_course_per_user")
        ]

    def __str__(self) -> str:
        return f"{self.course_name or self.course_id} ({self.user})"


class History(models.Model):
    """One turn: what was asked, what streamed back, and what the tools did.

    Each thing is stored once: `inputs` is what the provider was sent (the question a later turn
    of the conversation recalls is these joined by newlines), `completion` the answer, of which
    the API's `outputs` is a one-item view.
    """

    class Status(models.TextChoices):
        COMPLETE = "complete"
        CANCELLED = "cancelled"
        ERROR = "error"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assistant_turns"
    )
    institution = models.ForeignKey(
        Institution, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    conversation = models.ForeignKey(
        Conversation, null=True, blank=True, on_delete=models.SET_NULL, related_name="turns"
    )
    assistant = models.ForeignKey(
        Assistant, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    inputs = models.JSONField(default=list)
    completion = models.TextField(blank=True, default="")
    # [{"id": "round-0", "round": 0, "text": "...", "signature": "..."}]; empty when the
    # institution does not display thinking.
    thinking = models.JSONField(default=list, blank=True)
    # [{"call_id", "name", "arguments", "response", "success", "duration_ms", "round"}]
    tool_calls = models.JSONField(default=list, blank=True)
    usage = models.JSONField(default=dict, blank=True)
    cached = models.BooleanField(default=False)
    provider = models.CharField(max_length=16, blank=True, default="")
    model = models.CharField(max_length=200, blank=True, default="")
    status = models.CharField(max_length=16, choices=Status.choices)
    error_message = models.TextField(blank=True, default="")
    latency_ms = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "histories"
        indexes = [models.Index(fields=["user", "-created_at"], name="history_user_recent")]

    def __str__(self) -> str:
        return f"turn {self.pk} of {self.user_id} ({self.status})"

    @property
    def outputs(self) -> list[str]:
        return [self.completion] if self.completion else []

    @property
    def total_tokens(self) -> int:
        """The turn's tokens as one number, the API's `usage` (its breakdown: `usageDetails`)."""
        return int(self.usage.get("total_tokens", 0))
