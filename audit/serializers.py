from __future__ import annotations

from rest_framework import serializers


class AuditEntryOutput(serializers.Serializer):
    id = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    actor_id = serializers.IntegerField(allow_null=True)
    actor_email = serializers.CharField(allow_blank=True)
    action = serializers.CharField()
    resource = serializers.CharField(allow_blank=True)
    details = serializers.JSONField()
    ip_address = serializers.IPAddressField(allow_null=True)
    user_agent = serializers.CharField(allow_blank=True)
    success = serializers.BooleanField()
    prev_hash = serializers.CharField()
    hash = serializers.CharField()


class AuditPage(serializers.Serializer):
    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = AuditEntryOutput(many=True)


class AuditFilterInput(serializers.Serializer):
    action = serializers.CharField(required=False, max_length=64, help_text="e.g. login_failed")
    user = serializers.CharField(
        required=False,
        max_length=254,
        help_text="A user id or email address (administrators; others see only their own).",
    )
    resource = serializers.CharField(
        required=False,
        max_length=200,
        help_text="Exactly what an entry names: workspace:ws-…, session:<uuid>, user:<id>, …",
    )
    success = serializers.BooleanField(required=False, allow_null=True, default=None)
    since = serializers.DateTimeField(required=False, help_text="ISO 8601; inclusive.")
    until = serializers.DateTimeField(required=False, help_text="ISO 8601; inclusive.")
    format = serializers.ChoiceField(
        choices=["json", "csv"],
        required=False,
        default="json",
        help_text="csv streams every matching entry as text/csv instead of a JSON page.",
    )

    def validate_user(self, value: str) -> int | str:
        # isascii: str.isdigit() also accepts digits such as "²" that int() refuses.
        return int(value) if value.isascii() and value.isdigit() else value
