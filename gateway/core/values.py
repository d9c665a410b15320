"""Bounds on what a server may hand the gateway as one value, and safe words for errors.

Every dialect parses values with these, and the buffer checks what it restores, so no
answer, however deep or large, can make the gateway recurse past Python's limit (a
``repr``, a comparison, orjson's encoder at 255 levels) or publish a message the broker
refuses.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.core.models import Value

MAX_DEPTH = 64
"""Levels of lists and objects one value may have; deeper is a read error of its tag."""
MAX_VALUE_BYTES = 65_536
"""Size of one value, as a string's length or its JSON encoding; larger is a read error."""
SCALARS = frozenset({bool, int, float, str, type(None)})
"""The types of values that need no check beyond a string's length: parsers test a
value's type against these first and call ``checked_value`` only for the others."""
_SHOWN = 60  # characters of a value or text shown in an error message


def checked_value(value: Any) -> Value:
    """``value`` if it is one the gateway can carry; ``ValueError``/``TypeError`` why not."""
    kind = type(value)
    if kind is str:
        if len(value) > MAX_VALUE_BYTES:
            raise ValueError(f"a string of {len(value)} chars, more than {MAX_VALUE_BYTES}")
        return value  # type: ignore[no-any-return]
    if kind in SCALARS:
        return value  # type: ignore[no-any-return]
    if kind is not list and kind is not dict:
        raise TypeError(f"value {show(value)} is not JSON")
    depth = nesting(value, MAX_DEPTH)
    if depth > MAX_DEPTH:
        raise ValueError(f"a value nested more than {MAX_DEPTH} levels deep")
    size = len(orjson.dumps(value))
    if size > MAX_VALUE_BYTES:
        raise ValueError(f"a value of {size} bytes as JSON, more than {MAX_VALUE_BYTES}")
    return value  # type: ignore[no-any-return]


MAX_ID = 256
"""Characters of an alarm id: it becomes a topic level, and a topic has a size limit."""


def check_id(alarm_id: str) -> str:
    """``alarm_id`` if it is short enough to be a topic level; ``ValueError`` if not."""
    if not alarm_id or len(alarm_id) > MAX_ID:
        raise ValueError(f"an id of {len(alarm_id)} chars, not 1 to {MAX_ID}")
    return alarm_id


def nesting(value: Any, limit: int) -> int:
    """Levels of lists and objects in ``value``, counted without recursion, and no
    further than ``limit + 1``."""
    deepest = 0
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        node, depth = pending.pop()
        if type(node) is list:
            children: Any = node
        elif type(node) is dict:
            children = node.values()
        else:
            continue
        deepest = max(deepest, depth)
        if depth > limit:
            return depth
        pending.extend((child, depth + 1) for child in children if type(child) in (list, dict))
    return deepest


def show(value: object) -> str:
    """A short description of ``value`` for an error message: never recursive, never long."""
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if isinstance(value, dict):
        return f"an object of {len(value)} keys"
    text = repr(value) if not isinstance(value, str) else repr(value[: _SHOWN + 1])
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "..."


def short_text(value: object) -> str:
    """A server's error text, or whatever stands in its place, cut to a log line's size."""
    text = value if isinstance(value, str) else show(value)
    return text if len(text) <= 2 * _SHOWN else text[: 2 * _SHOWN] + "..."


def why(exc: Exception) -> str:
    """A short reason: ``KeyError('x')`` reads as ``no 'x'``, the rest as their message."""
    return f"no {show(exc.args[0])}" if isinstance(exc, KeyError) else short_text(str(exc))
