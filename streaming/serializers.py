from __future__ import annotations

import zoneinfo
from functools import cache

from django.conf import settings
from rest_framework import serializers

from core.inputs import StrictText, StrictUUID
from streaming.models import History


@cache
def _iana_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


class CourseInput(serializers.Serializer):
    course_id = serializers.CharField(max_length=128)
    course_name = serializers.CharField(max_length=200, required=False, allow_blank=True)


class RequestArgsInput(serializers.Serializer):
    institutionPublicId = StrictUUID(
        required=False, allow_null=True, help_text="The institution (digital twin) to ask in."
    )
    assistantId = StrictUUID(
        required=False,
        allow_null=True,
        help_text="The assistant to use (the conversation remembers it). Absent: the "
        "conversation's assistant, else the default; null: the default, and the conversation "
        "forgets the one it had.",
    )
    selectedCourse = CourseInput(
        required=False, allow_null=True, help_text="The conversation this turn belongs to."
    )
    ragOnly = serializers.BooleanField(
        required=False, default=False, help_text="Only the catalog search's results, no model."
    )
    userTimezone = serializers.CharField(
        required=False, allow_null=True, max_length=64, help_text="An IANA time zone name."
    )
    socketId = serializers.CharField(
        required=False,
        allow_null=True,
        allow_blank=True,
        max_length=128,
        help_text="JSON route only: also stream the turn to this Socket.IO socket.",
    )

    def validate_userTimezone(self, value):
        if value and value not in _iana_names():
            raise serializers.ValidationError("Not an IANA time zone name.")
        return value or None


class QandaInput(serializers.Serializer):
    inputs = serializers.ListField(
        child=StrictText(max_length=32000),
        allow_empty=False,
        max_length=50,
        help_text="The question. Together the strings hold at most "
        f"{settings.WORKGATE_QANDA_MAX_INPUT_CHARS:,} characters (WORKGATE_QANDA_MAX_INPUT_CHARS).",
    )
    requestArgs = RequestArgsInput(required=False)

    def validate_inputs(self, value: list[str]) -> list[str]:
        # What is sent to the provider is what the history stores: bounded as a whole, not
        # only per string, or 50 strings could make one turn 1.6 million characters.
        total = sum(len(text) for text in value)
        limit = settings.WORKGATE_QANDA_MAX_INPUT_CHARS
        if total > limit:
            raise serializers.ValidationError(
                f"The inputs hold {total:,} characters together; at most {limit:,} are accepted."
            )
        return value


USAGE_HELP = (
    "The tokens the turn used, input and output of every model call together, as Praxis gives "
    "them (the builtin assistant counts words as tokens)."
)
USAGE_DETAILS_HELP = "The breakdown of `usage`: input, output, total and cached input tokens."


class UsageOutput(serializers.Serializer):
    """`usageDetails`: the breakdown of `usage`."""

    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()
    cached_input_tokens = serializers.IntegerField()


class QandaOutput(serializers.Serializer):
    success = serializers.BooleanField()
    streamingFailed = serializers.BooleanField(
        help_text="A socketId was given but the turn could not be streamed to it."
    )
    outputs = serializers.ListField(child=serializers.CharField())
    usage = serializers.IntegerField(help_text=USAGE_HELP)
    usageDetails = UsageOutput()
    model = serializers.CharField()
    query_duration_ms = serializers.IntegerField()
    historyId = serializers.IntegerField()


class AssistantRef(serializers.Serializer):
    id = serializers.UUIDField()
    name = serializers.CharField()


class ThinkingRoundOutput(serializers.Serializer):
    id = serializers.CharField()
    round = serializers.IntegerField()
    text = serializers.CharField()
    signature = serializers.CharField(required=False)


class ToolCallOutput(serializers.Serializer):
    call_id = serializers.CharField()
    name = serializers.CharField()
    arguments = serializers.DictField()
    response = serializers.JSONField(allow_null=True)
    success = serializers.BooleanField()
    duration_ms = serializers.IntegerField()
    round = serializers.IntegerField()


class HistoryOutput(serializers.Serializer):
    id = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    status = serializers.ChoiceField(choices=History.Status.choices)
    error = serializers.CharField(source="error_message")
    course_id = serializers.CharField(source="conversation.course_id", allow_null=True)
    course_name = serializers.CharField(source="conversation.course_name", allow_null=True)
    institutionPublicId = serializers.UUIDField(source="institution.public_id", allow_null=True)
    assistant = AssistantRef(allow_null=True)
    inputs = serializers.ListField(child=serializers.CharField())
    outputs = serializers.ListField(child=serializers.CharField())
    completion = serializers.CharField()
    thinking = ThinkingRoundOutput(many=True)
    tool_calls = ToolCallOutput(many=True)
    usage = serializers.IntegerField(source="total_tokens", help_text=USAGE_HELP)
    usageDetails = serializers.DictField(
        source="usage", child=serializers.IntegerField(), help_text=USAGE_DETAILS_HELP
    )
    model = serializers.CharField()
    provider = serializers.CharField()
    cached = serializers.BooleanField()


class UserRef(serializers.Serializer):
    id = serializers.IntegerField()
    email = serializers.EmailField()


class AdminHistoryOutput(HistoryOutput):
    user = UserRef()
    latency_ms = serializers.IntegerField()


LIST_TRUNCATED_HELP = (
    "True when turns that `limit` would have listed were left out to keep the answer within "
    f"{settings.WORKGATE_HISTORY_LIST_MAX_BYTES:,} bytes (WORKGATE_HISTORY_LIST_MAX_BYTES): ask "
    "again with `before` set to the last turn's `created_at`. At least one turn is listed."
)


class HistoryListOutput(serializers.Serializer):
    success = serializers.BooleanField()
    truncated = serializers.BooleanField(help_text=LIST_TRUNCATED_HELP)
    data = HistoryOutput(many=True)


class HistoryDetailOutput(serializers.Serializer):
    success = serializers.BooleanField()
    data = HistoryOutput()


class AdminHistoryListOutput(serializers.Serializer):
    success = serializers.BooleanField()
    truncated = serializers.BooleanField(help_text=LIST_TRUNCATED_HELP)
    data = AdminHistoryOutput(many=True)


class HistoryQueryInput(serializers.Serializer):
    course_id = serializers.CharField(required=False, max_length=128)
    before = serializers.DateTimeField(required=False, help_text="Only turns created before.")
    after = serializers.DateTimeField(required=False, help_text="Only turns created after.")
    search = serializers.CharField(required=False, max_length=200)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=200, default=50)


class AdminHistoryQueryInput(HistoryQueryInput):
    user_id = serializers.IntegerField(required=False, min_value=1)
    status = serializers.ChoiceField(required=False, choices=History.Status.choices)


class CourseOutput(serializers.Serializer):
    course_id = serializers.CharField()
    course_name = serializers.CharField()
    history_count = serializers.IntegerField()
    last_dialogue_date = serializers.DateTimeField(allow_null=True)
    assistant = AssistantRef(allow_null=True)


class CourseListOutput(serializers.Serializer):
    success = serializers.BooleanField()
    data = CourseOutput(many=True)
