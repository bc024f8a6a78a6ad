"""How an error message names a JSON value's type ("got a number"), for every request parser."""

from __future__ import annotations

from typing import Any


def json_type(value: Any) -> str:
    """'null', 'a boolean', 'a number', 'a string', 'an array' or 'an object', as parsed by json."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    return "an object"
