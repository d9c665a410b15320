"""How a JSON answer is built, without its values: for logging what a real server sends.

A field report then shows the JSON types and keys of the answers a server gives, and
never a value.
"""

from __future__ import annotations

from typing import Any

SHAPE_KEYS = 30  # keys shown per object when logging the shape of an answer
SHAPE_ITEMS = 20  # list items sampled for it
SHAPE_DEPTH = 4
_JSON_TYPES = {type(None): "null", bool: "bool", int: "int", float: "float", str: "str"}


def describe_shape(data: Any, depth: int = 0) -> str:
    """How ``data`` is built, without its values: JSON types, and the keys of objects.

    The items of a list are merged into one description (types joined with ``|``).
    """
    if isinstance(data, list):
        if not data:
            return "[]"
        if depth >= SHAPE_DEPTH * 4:
            return "[...]"  # lists of lists are shown further down, but not without end
        sample = data[:SHAPE_ITEMS]
        if all(isinstance(item, dict) for item in sample) and depth < SHAPE_DEPTH:
            merged: dict[str, set[str]] = {}
            for item in sample:
                for key, value in item.items():
                    merged.setdefault(key, set()).add(describe_shape(value, depth + 1))
            inner = _fields_text({key: " | ".join(sorted(kinds)) for key, kinds in merged.items()})
        else:
            inner = " | ".join(sorted({describe_shape(item, depth + 1) for item in sample}))
        return f"[{len(data)} x {inner}]"
    if isinstance(data, dict):
        if depth >= SHAPE_DEPTH:
            return "{...}"
        return _fields_text({key: describe_shape(value, depth + 1) for key, value in data.items()})
    return _JSON_TYPES.get(type(data), type(data).__name__)


def _fields_text(fields: dict[str, str]) -> str:
    shown = sorted(fields.items())[:SHAPE_KEYS]
    more = ", ..." if len(fields) > SHAPE_KEYS else ""
    return "{" + ", ".join(f"{key}: {kind}" for key, kind in shown) + more + "}"
