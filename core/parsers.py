"""Reading JSON that others send, where nesting too deep for Python's decoder is bad input.

`json` raises RecursionError, not ValueError, for a document nested some thousands deep
(`[` * 100000 is 100 KB): code that catches ValueError for "not JSON" lets it through as a
server error. DRF's JSONParser is such code; every API view reads its body through
`JSONParser` here (REST_FRAMEWORK's DEFAULT_PARSER_CLASSES), and JSON read outside DRF goes
through `json_loads`.
"""

from __future__ import annotations

import json
from typing import Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError

TOO_DEEP = "JSON parse error - nested too deeply"


def json_loads(text: str | bytes, **kwargs) -> Any:
    """json.loads, raising ValueError (json.JSONDecodeError) for nesting too deep too."""
    try:
        return json.loads(text, **kwargs)
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply", "", 0) from None


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, answering 400 `parse_error` for nesting too deep as for any other
    malformed body."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(TOO_DEEP) from None
