"""The answers of the ``rest`` dialect, parsed without I/O into the core's models.

Bulk reads are the hot path and are parsed with orjson's output straight into
``Reading`` objects. A malformed item costs its own tag an error entry; a malformed
answer as a whole is a ``WinCCProtocolError`` naming the request.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from gateway.core.models import (
    Alarm,
    AlarmList,
    Reading,
    ReadResult,
    TagInfo,
    new_reading,
    tag_type_of,
)
from gateway.core.timestamps import parse_optional_ts, parse_ts
from gateway.core.values import SCALARS, check_id, checked_value, short_text, show, why
from gateway.errors import WinCCProtocolError
from gateway.wincc.memo import ReadingMemo

T = TypeVar("T")

LOGIN_PATH = "/api/auth/login"


Outcome = tuple[str, Reading | str] | None
"""What one item of a bulk read answer says: its tag's reading, or the reason it has
none; None when the item cannot be attributed to a tag."""

MISSING = "missing from the server's answer"


def parse_read_answer(
    names: Sequence[str], data: dict[str, Any], memo: ReadingMemo | None = None
) -> ReadResult:
    """Readings and per-name errors of a bulk read answer, in the server's order."""
    items = data.get("values")
    if not isinstance(items, list):
        raise WinCCProtocolError("POST /api/dp/read: the answer has no 'values' list")
    return collect_outcomes(names, [item_outcome(item, memo) for item in items])


def item_outcome(item: Any, memo: ReadingMemo | None = None) -> Outcome:
    """What one item of a bulk read answer says.

    A malformed item costs only its own name an error entry. The ``try`` costs nothing
    in Python 3.11+ unless it catches, which is why the well-formed path needs no
    separate pre-check.
    """
    name = item.get("name") if type(item) is dict else None
    if type(name) is not str:
        return None
    error = item.get("error")
    if error is not None:
        return name, short_text(error)
    try:
        return name, _reading(name, item, memo)
    except (KeyError, TypeError, ValueError) as exc:
        return name, f"malformed reading: {why(exc)}"


def collect_outcomes(names: Sequence[str], outcomes: Iterable[Outcome]) -> ReadResult:
    """The readings and errors of the names asked for, in the answer's order.

    Items of names nobody asked for are left out, a name listed twice counts once (the
    first), and a name the answer does not mention at all is an error: no requested tag
    goes silently missing.
    """
    result = ReadResult()
    readings, errors = result.readings, result.errors
    unanswered = dict.fromkeys(names, True)
    answer = unanswered.pop
    for outcome in outcomes:
        if outcome is None or not answer(outcome[0], False):
            continue
        name, said = outcome
        if isinstance(said, str):
            errors[name] = said
        else:
            readings.append(said)
    for name in unanswered:
        errors[name] = MISSING
    return result


def _reading(name: str, item: dict[str, Any], memo: ReadingMemo | None = None) -> Reading:
    """A reading from one API item; ``KeyError``/``TypeError``/``ValueError`` if malformed."""
    value = item["value"]
    quality = item["quality"]
    if type(quality) is not int:
        raise TypeError(f"quality {show(quality)} is not a whole number")
    if type(value) not in SCALARS or type(value) is str:
        value = checked_value(value)
    text = item["timestamp"]
    if memo is not None:
        return memo.reading(name, value, quality, text)
    return new_reading((name, value, quality, parse_ts(text)))


def parse_reading_answer(method: str, path: str, data: dict[str, Any]) -> Reading:
    """The reading of a single-tag answer (a read, or a write's reading afterwards)."""
    try:
        return _reading(_typed(data, "name", str), data)
    except (KeyError, TypeError, ValueError) as exc:
        raise WinCCProtocolError(f"{method} {path}: malformed reading: {why(exc)}") from exc


def parse_login_answer(data: dict[str, Any]) -> str:
    """The token of a login answer."""
    token = data.get("token")
    if not isinstance(token, str) or not token:
        raise WinCCProtocolError(f"POST {LOGIN_PATH}: the answer carries no token")
    return token


def parse_history_page(
    path: str, name: str, data: dict[str, Any]
) -> tuple[list[Reading], str | None]:
    """The readings of one history page and the cursor to the next, if any."""
    try:
        readings = [_reading(name, _object(item)) for item in _list(data, "values")]
        cursor = data["next"]
    except (KeyError, TypeError, ValueError) as exc:
        raise WinCCProtocolError(f"GET {path}: malformed history page: {why(exc)}") from exc
    if cursor is not None and not isinstance(cursor, str):
        raise WinCCProtocolError(f"GET {path}: the next cursor {show(cursor)} leads nowhere")
    return readings, cursor


def parse_browse_answer(where: str, data: dict[str, Any]) -> list[TagInfo]:
    """The children a browse answer lists."""
    try:
        return [_tag_info(_object(item)) for item in _list(data, "children")]
    except (KeyError, TypeError, ValueError) as exc:
        raise WinCCProtocolError(f"{where}: malformed children: {why(exc)}") from exc


def parse_alarms_answer(data: dict[str, Any]) -> AlarmList:
    """The active alarms; an alarm that cannot be read is an error of its id only."""
    alerts = data.get("alerts")
    if not isinstance(alerts, list):
        raise WinCCProtocolError("GET /api/alerts/active: malformed alarm list: no 'alerts' list")
    alarms = AlarmList()
    for index, item in enumerate(alerts):
        try:
            alarms.append(_alarm(_object(item)))
        except (KeyError, TypeError, ValueError) as exc:
            alarm_id = item.get("id") if type(item) is dict else None
            key = str(alarm_id) if type(alarm_id) in (str, int) else f"#{index}"
            alarms.errors[key] = f"malformed alarm: {why(exc)}"
    return alarms


def _list(data: dict[str, Any], key: str) -> list[Any]:
    found = data[key]
    if type(found) is not list:
        raise TypeError(f"{key} is {show(found)}, not a list")
    return found


def _object(item: Any) -> dict[str, Any]:
    if type(item) is not dict:
        raise TypeError(f"an item is {show(item)}, not an object")
    return item


def _alarm(item: dict[str, Any]) -> Alarm:
    alarm_id = item["id"]
    if type(alarm_id) not in (str, int):
        raise TypeError(f"id is {show(alarm_id)}, neither a string nor a number")
    state = _typed(item, "state", str)
    if state not in ("came", "went"):
        raise ValueError(f"state {show(state)} is neither 'came' nor 'went'")
    return Alarm(
        id=check_id(str(alarm_id)),
        tag=_typed(item, "tag", str),
        text=_typed(item, "text", str),
        priority=_typed(item, "priority", int),
        state=state,
        acked=_typed(item, "acked", bool),
        came_at=_ts_or_none(item, "came_at"),
        went_at=_ts_or_none(item, "went_at"),
        acked_at=_ts_or_none(item, "acked_at"),
    )


def _tag_info(item: dict[str, Any]) -> TagInfo:
    return TagInfo(
        name=_typed(item, "name", str),
        type=tag_type_of(item.get("type")),
        has_children=_typed(item, "has_children", bool),
        writable=_typed(item, "writable", bool),
    )


def _typed(item: dict[str, Any], key: str, kind: type[T]) -> T:
    """``item[key]`` if it has exactly type ``kind`` (so ``True`` is no ``int``)."""
    value = item[key]
    if type(value) is not kind:
        raise TypeError(f"{key} is {show(value)}, not of type {kind.__name__}")
    return value


def _ts_or_none(item: dict[str, Any], key: str) -> int | None:
    """An optional time of an alarm: null or the .NET minimum date mean "never"."""
    return parse_optional_ts(item[key])
