"""Reading request input as the OpenAPI document declares it: fields that take only their JSON
type (DRF's own coerce 42 to "42", true to a UUID and an object to the list of its keys), and
query strings validated like bodies."""

from __future__ import annotations

from rest_framework import serializers


class _StringOnly:
    """A field whose JSON value must be a string before the field reads it."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictText(_StringOnly, serializers.CharField):
    """A JSON string, and only a string (CharField would turn 42 into "42")."""


class StrictUUID(_StringOnly, serializers.UUIDField):
    """A UUID written as a string (UUIDField reads an integer, true included, as one)."""


class NamedRows(serializers.ManyRelatedField):
    """A JSON list of rows named by `slug_field` (ManyRelatedField takes an object as the list of
    its keys). A name with a NUL is no row's: it never reaches the database, which refuses it."""

    def __init__(self, *, queryset, slug_field: str, **kwargs):
        child = _RowNamed(queryset=queryset, slug_field=slug_field)
        super().__init__(child_relation=child, **kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, list):
            self.fail("not_a_list", input_type=type(data).__name__)
        return super().to_internal_value(data)


class _RowNamed(serializers.SlugRelatedField):
    def to_internal_value(self, data):
        if isinstance(data, str) and "\x00" in data:
            self.fail("does_not_exist", slug_name=self.slug_field, value=data)
        return super().to_internal_value(data)


def query_input(serializer_class: type[serializers.Serializer], request) -> dict:
    """The query string validated by `serializer_class`, or a 400 naming the parameter.

    Given a QueryDict, DRF reads it as an HTML form, where a blank optional field counts as not
    sent: `?user=` would list every account's entries instead of refusing the blank name. A
    plain dict makes a blank value a value like any other (the last one, if repeated).
    """
    query = serializer_class(data=request.query_params.dict())
    query.is_valid(raise_exception=True)
    return query.validated_data
