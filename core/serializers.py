"""The one error shape every API answers with (core.exceptions makes it), for the OpenAPI
documents."""

from __future__ import annotations

from rest_framework import serializers


class ErrorOutput(serializers.Serializer):
    success = serializers.BooleanField(default=False)
    detail = serializers.CharField()
    code = serializers.CharField()
    errors = serializers.DictField(required=False)
