"""Querysets compiled to SQL once, for the hottest read paths.

Building a queryset and compiling it to SQL costs CPU on every call (about 0.3 ms for a
desktop ticket's runtime lookup on an idle machine, twice that under load: half of the ticket
view's own time), though the statement is the same every time and only its parameters change.
`CompiledQuery` compiles the queryset once, with stand-in values, remembers where they fall
among the parameters, and from then on runs that SQL with the real values through `raw()`,
which still converts every column as the field would (decryption included).
Annotations come back as the database gives them (no field converts them).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.db.models import QuerySet
from django.db.models.query import RawQuerySet


class CompiledQuery:
    def __init__(self, build: Callable[..., QuerySet], **stand_ins):
        """`build(**values)` makes the queryset; `stand_ins` name each value with one of its
        type that no caller would pass (it is compiled, never run)."""
        self._build = build
        self._stand_ins = stand_ins
        self._compiled: tuple | None = None

    def _compile(self) -> tuple:
        queryset = self._build(**self._stand_ins)
        sql, params = queryset.query.sql_with_params()
        slots = {
            index: (name, spell)
            for index, value in enumerate(params)
            for name, stand_in in self._stand_ins.items()
            for spell in _spellings(stand_in)
            if _same(value, spell(stand_in))
        }
        if {name for name, _ in slots.values()} != set(self._stand_ins):
            raise ImproperlyConfigured("every stand-in value must reach the query's parameters")
        # Compiled again with other stand-ins, the statement must change in those slots only: a
        # value that also reaches it transformed (a LIKE pattern, a date taken from a datetime)
        # would keep the stand-in there.
        others = {name: _other(stand_in) for name, stand_in in self._stand_ins.items()}
        other_sql, other_params = self._build(**others).query.sql_with_params()
        expected = list(params)
        for index, (name, spell) in slots.items():
            expected[index] = spell(others[name])
        if other_sql != sql or not all(map(_same, other_params, expected)):
            raise ImproperlyConfigured("a stand-in value reaches the query in a form of its own")
        return queryset.model, sql, list(params), slots

    def __call__(self, **values) -> RawQuerySet:
        if self._compiled is None:  # two threads may both compile; either result is the same
            self._compiled = self._compile()
        model, sql, params, slots = self._compiled
        params = list(params)
        for index, (name, spell) in slots.items():
            params[index] = spell(values[name])
        return model.objects.raw(sql, params)


def _same(value, spelled) -> bool:
    return type(value) is type(spelled) and value == spelled


def _spellings(stand_in) -> Iterator[Callable]:
    """How a field may have handed a value of this type to the database: as itself, or as the
    backend stores it where it has no type of its own (SQLite: a UUID as hex, a datetime as
    text)."""
    yield _as_is
    if isinstance(stand_in, uuid.UUID):
        yield _hex
    if isinstance(stand_in, datetime):
        yield connection.ops.adapt_datetimefield_value


def _other(stand_in):
    """Another value of the stand-in's type (no caller would pass it either)."""
    if isinstance(stand_in, str):
        return stand_in + "\x01"
    if isinstance(stand_in, bool):
        raise ImproperlyConfigured("a boolean cannot stand in: a caller may pass either value")
    if isinstance(stand_in, int):
        return stand_in - 1
    if isinstance(stand_in, uuid.UUID):
        return uuid.UUID(int=stand_in.int ^ 1)
    if isinstance(stand_in, datetime):
        return stand_in + timedelta(microseconds=1)
    raise ImproperlyConfigured(f"no stand-in of type {type(stand_in).__name__}")


def _as_is(value):
    return value


def _hex(value: uuid.UUID) -> str:
    return value.hex


def queryable(*values) -> bool:
    """Whether these values (ids, filters) may be asked of the database: PostgreSQL refuses a NUL
    in text, and no stored id or name holds one, so a value with a NUL matches nothing and is
    answered as such without asking."""
    return not any(value is not None and "\x00" in str(value) for value in values)
