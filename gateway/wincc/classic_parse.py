"""The answers of the WinCC REST service (``classic`` dialect), parsed without I/O.

Public clients that ran against real servers show variations (``qualitycode`` or
``qualityCode``, an array or ``{"values": [...]}``, a 200 with an empty body for an invalid
name), so answers are parsed tolerantly: field names case-insensitively, lists wherever
they are wrapped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.core.models import (
    Alarm,
    AlarmList,
    Reading,
    ReadResult,
    TagInfo,
    TagType,
    new_reading,
    tag_type_of,
)
from gateway.core.timestamps import parse_optional_ts, parse_ts
from gateway.core.values import SCALARS, check_id, checked_value, short_text, show, why
from gateway.errors import WinCCNotFound, WinCCProtocolError, WinCCRejected
from gateway.wincc.memo import ReadingMemo
from gateway.wincc.tree import tree_of

VALUES_PATH = "/tagManagement/Values"
HISTORY_PATH = "/tagLogging/Values"
"""The paths of the two requests whose answers' errors name them."""
EMPTY_ANSWER = "WinCC answered with an empty body, as it does for a name it does not know"

DATA_TYPES: dict[int, TagType] = {
    1: TagType.BOOL,  # binary tag
    2: TagType.INT,  # signed 8-bit
    3: TagType.INT,  # unsigned 8-bit
    4: TagType.INT,  # signed 16-bit
    5: TagType.INT,  # unsigned 16-bit
    6: TagType.INT,  # signed 32-bit
    7: TagType.INT,  # unsigned 32-bit
    8: TagType.FLOAT,  # floating-point 32-bit
    9: TagType.FLOAT,  # floating-point 64-bit
    10: TagType.STRING,  # text, 8-bit character set
    11: TagType.STRING,  # text, 16-bit character set
}
"""WinCC ``dataType`` codes -> tag types, taken from the ``DM_VARTYPE_*`` constants of the
WinCC ODK; to be confirmed against a real REST service. Raw data, arrays, structures and
bit fields (12 and up) have no tag type: browse lists them as of unknown type and they
are not polled."""

MESSAGE_STATES: dict[int, tuple[str, bool]] = {
    0x01: ("came", False),
    0x02: ("went", False),
    0x03: ("came", True),  # acknowledged; a message that went and was acknowledged is gone
    0x10: ("came", True),  # acknowledged by the system
    0x11: ("came", True),  # emergency acknowledgement
    0x12: ("came", True),  # acknowledged at the horn
    0x13: ("went", False),  # came and went before anyone saw it
}
"""Message state codes -> (state, acknowledged), after the ``MSG_STATE_*`` constants of the
WinCC ODK; to be confirmed against a real REST service. Other codes (locked, hidden, ...)
are not alarms the gateway tracks: such messages are skipped and logged once per code."""

_STATE_WORDS: dict[str, tuple[str, bool]] = {
    "came": ("came", False),
    "came in": ("came", False),
    "come": ("came", False),
    "raised": ("came", False),
    "went": ("went", False),
    "went out": ("went", False),
    "gone": ("went", False),
    "cleared": ("went", False),
    "acknowledged": ("came", True),
    "acked": ("came", True),
    "quit": ("came", True),
}
"""The same states as texts, for servers that name them."""


def _lower(item: dict[str, Any]) -> dict[str, Any]:
    """``item`` with its keys in lower case: servers differ in the case of field names."""
    return {key.lower(): value for key, value in item.items()}


def _first(fields: dict[str, Any], *keys: str) -> Any:
    """The value of the first of ``keys`` present and not null in ``fields``."""
    for key in keys:
        value = fields.get(key)
        if value is not None:
            return value
    return None


def _items(data: Any, keys: tuple[str, ...]) -> list[dict[str, Any]]:
    """The objects of a list answer, keys lowered: a bare array, or one under ``keys``."""
    items = data
    if isinstance(data, dict):
        fields = _lower(data)
        items = next((fields[key] for key in keys if isinstance(fields.get(key), list)), None)
    if not isinstance(items, list):
        raise TypeError(f"neither an array nor an object with one of {list(keys)}")
    lowered = []
    for item in items:
        if not isinstance(item, dict):
            raise TypeError(f"an item is {type(item).__name__}, not an object")
        lowered.append(_lower(item))
    return lowered


def parse_value_answer(method: str, path: str, name: str, data: Any) -> Reading:
    """The reading of a single-tag answer."""
    fields = _single_item(method, path, data)
    try:
        return _reading(name, fields)
    except (KeyError, TypeError, ValueError) as exc:
        raise WinCCProtocolError(f"{method} {path}: malformed reading: {why(exc)}") from exc


def parse_write_answer(path: str, name: str, data: Any) -> Reading | None:
    """The reading of a write's answer; None when the answer only says that it succeeded."""
    fields = _single_item("PUT", path, data)
    try:
        return _reading(name, fields)
    except (KeyError, TypeError, ValueError):
        return None


def _single_item(method: str, path: str, data: Any) -> dict[str, Any]:
    """The one item of a single-tag answer (an object, or a list of one); item errors raise."""
    if data is None:
        raise WinCCNotFound(f"{method} {path}: {EMPTY_ANSWER}")
    fields = _lower(data) if isinstance(data, dict) else {}
    if not fields or isinstance(fields.get("values"), list):
        try:
            fields = _items(data, ("values",))[0]
        except (IndexError, TypeError) as exc:
            raise WinCCProtocolError(f"{method} {path}: no item in the answer ({exc})") from exc
    failure = item_failure(fields)
    if failure is not None:
        raise WinCCRejected(f"{method} {path}: {failure}")
    return fields


def item_failure(fields: dict[str, Any]) -> str | None:
    """Why an item failed (a non-empty ``error``, an ``errorcode`` other than 0), or None."""
    error = fields.get("error")
    text = short_text(error.strip()) if isinstance(error, str) else ""
    code = fields.get("errorcode")
    failed = type(code) in (int, float, str, bool) and code not in (0, "0", "")
    if type(code) in (list, dict):
        failed, code = True, show(code)
    elif type(code) is str:
        code = short_text(code)
    if text and failed:
        return f"{text} (errorcode {code})"
    if failed:
        return f"errorcode {code}"
    return text or None


def _reading(name: str, fields: dict[str, Any], memo: ReadingMemo | None = None) -> Reading:
    """A reading from one item with lowered keys; ``KeyError``/``TypeError``/``ValueError``."""
    value = fields["value"]
    quality = fields.get("qualitycode", fields.get("quality"))
    if quality is None:
        raise KeyError("qualitycode")
    if type(quality) is not int:
        raise TypeError(f"quality {show(quality)} is not a whole number")
    if type(value) not in SCALARS or type(value) is str:
        value = checked_value(value)
    if memo is not None:
        return memo.reading(name, value, quality, fields["timestamp"])
    return new_reading((name, value, quality, parse_ts(fields["timestamp"])))


def parse_values_answer(
    names: Sequence[str], data: Any, memo: ReadingMemo | None = None
) -> ReadResult:
    """Readings and per-name errors of a ``tagManagement/Values`` answer.

    Items are matched to ``names`` by ``variableName``, exactly or else ignoring case (the
    server may spell a name its own way); names without an item are errors too.
    """
    try:
        items = _items(data, ("values", "variables"))
    except TypeError as exc:
        raise WinCCProtocolError(f"POST {VALUES_PATH}: {exc}") from exc
    result = ReadResult()
    readings, errors = result.readings, result.errors
    wanted = set(names)
    folded: dict[str, str] | None = None
    for fields in items:
        name = fields.get("variablename")
        if type(name) is not str:
            continue  # cannot be attributed; its name is reported missing below
        if name not in wanted:
            if folded is None:
                folded = {wanted_name.casefold(): wanted_name for wanted_name in names}
            name = folded.get(name.casefold())
            if name is None:
                continue
        failure = item_failure(fields)
        if failure is not None:
            errors[name] = failure
            continue
        try:
            readings.append(_reading(name, fields, memo))
        except (KeyError, TypeError, ValueError) as exc:
            errors[name] = f"malformed reading: {why(exc)}"
    result.mark_missing(names, wanted)
    return result


def parse_history_answer(name: str, archived: str, data: Any) -> list[Reading]:
    """The readings of tag ``name`` (archive tag ``archived``) in a ``tagLogging/Values``
    answer, oldest first.

    Accepted: the request's shape echoed (archives holding variables holding ``values``),
    a list of variables, or the values bare; any ``error`` in it fails the request.
    """
    where = f"POST {HISTORY_PATH}"
    if data is None:
        raise WinCCProtocolError(f"{where}: {EMPTY_ANSWER}")
    values = _history_values(where, (archived, name), data)
    try:
        readings = [_reading(name, _lower(item)) for item in values]
    except (KeyError, TypeError, ValueError) as exc:
        raise WinCCProtocolError(f"{where}: malformed value of {name}: {why(exc)}") from exc
    readings.sort(key=lambda reading: reading.ts_ms)
    return readings


def _is_value(item: Any) -> bool:
    return isinstance(item, dict) and "value" in _lower(item)


def _history_values(where: str, names: tuple[str, str], data: Any) -> list[dict[str, Any]]:
    """The value items of the variable called one of ``names`` (or of no name)."""
    if isinstance(data, list) and all(_is_value(item) for item in data):
        return data
    pending = [data]
    while pending:
        node = pending.pop()
        if isinstance(node, list):
            pending.extend(reversed(node))
            continue
        if not isinstance(node, dict):
            continue
        fields = _lower(node)
        failure = item_failure(fields)
        if failure is not None:
            raise WinCCRejected(f"{where}: {failure}")
        values = fields.get("values")
        label = _first(fields, "variablename", "name")
        if (
            isinstance(values, list)
            and all(_is_value(item) for item in values)
            and (label is None or label in names)
        ):
            return values
        pending.extend(
            reversed([v for k, v in fields.items() if k != "values" and isinstance(v, list | dict)])
        )
    raise WinCCProtocolError(f"{where}: no values of {names[0]} in the answer")


def parse_config_page(where: str, data: Any) -> tuple[list[dict[str, Any]], str | None]:
    """The items of one page of a configuration list and its continuation point, if any."""
    try:
        items = _items(data, ("variables", "values", "items"))
    except TypeError as exc:
        raise WinCCProtocolError(f"{where}: {exc}") from exc
    point = _lower(data).get("continuationpoint") if isinstance(data, dict) else None
    if point in (None, "", 0) or isinstance(point, bool):
        return items, None
    if type(point) not in (str, int, float) or len(str(point)) > 1000:
        raise WinCCProtocolError(f"{where}: continuationPoint is {show(point)}, not a text")
    return items, str(point)


def build_tree(items: list[dict[str, Any]]) -> dict[str, list[TagInfo]]:
    """Folders (``""`` the root) and their children, from the dotted names of the tag list
    (``gateway.wincc.tree``); items without a name are skipped."""
    named = ((_first(fields, "name", "variablename"), fields) for fields in items)
    return tree_of(
        (name, _data_type(fields.get("datatype")))
        for name, fields in named
        if isinstance(name, str) and name
    )


def archive_map(items: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """Process tag -> (archive, archive tag) from the items of ``tagLogging/Variables``."""
    found: dict[str, tuple[str, str]] = {}
    for fields in items:
        archive = _first(fields, "archivename", "archive")
        archived = _first(fields, "name", "variablename")
        process = _first(fields, "processvariable", "processvariablename", "processtagname")
        if isinstance(archive, str) and isinstance(archived, str):
            found.setdefault(process if isinstance(process, str) else archived, (archive, archived))
    return found


def parse_message(fields: dict[str, Any]) -> Alarm | None:
    """An alarm from one message (keys lowered); None for a state that is no alarm's.

    The message's time is that of its current state, so it fills ``came_at``,
    ``went_at`` or ``acked_at`` by state. Raises ``KeyError``/``TypeError``/``ValueError``
    for a message that cannot be read at all.
    """
    number = _first(fields, "messagenumber", "msgno", "number", "alarmnumber", "id")
    if number is None:
        raise KeyError("messageNumber")
    if type(number) not in (int, str) or number == "":
        raise TypeError(f"message number {show(number)} is neither a number nor a text")
    instance = fields.get("instance")
    alarm_id = check_id(
        f"{number}:{instance}" if isinstance(instance, str) and instance else str(number)
    )
    state = _message_state(fields.get("state"))
    if state is None:
        return None
    kind, acked = state
    flag = _first(fields, "acknowledged", "acked")
    acked_by_state = acked
    if isinstance(flag, bool):
        acked = flag
    stamp = _first(fields, "timestamp", "datetime", "time")
    at = parse_optional_ts(stamp)
    priority = fields.get("priority")
    tag = _first(fields, "alarmtag", "variablename", "tagname", "tag")
    return Alarm(
        id=alarm_id,
        tag=_text("tag", tag),
        text=_text("text", _first(fields, "text1", "text", "messagetext", "infotext")),
        priority=priority if type(priority) is int else 0,
        state=kind,
        acked=acked,
        came_at=at if kind == "came" and not acked_by_state else None,
        went_at=at if kind == "went" else None,
        acked_at=at if acked_by_state else None,
    )


def _text(what: str, value: object) -> str:
    """A text field of a message; a number is taken as its text."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    raise TypeError(f"{what} is {show(value)}, not a text")


def _data_type(code: object) -> TagType | None:
    """The tag type of a ``dataType``: a WinCC code, or a name as some servers give it."""
    if type(code) is int:
        return DATA_TYPES.get(code)
    if isinstance(code, str) and code.strip().isdecimal() and len(code) < 10:
        return DATA_TYPES.get(int(code))
    return tag_type_of(code) if isinstance(code, str) else None


def parse_message_list(where: str, data: Any) -> tuple[AlarmList, list[object]]:
    """The alarms of a message list, and the states of the messages that are no alarms.

    A message that cannot be read is an error of its number only.
    """
    if data is None:
        raise WinCCProtocolError(f"{where}: empty answer; is the REST filter defined?")
    try:
        messages = _items(data, ("messages", "values", "items"))
    except TypeError as exc:
        raise WinCCProtocolError(f"{where}: malformed message list: {exc}") from exc
    alarms, skipped = AlarmList(), list[object]()
    for index, fields in enumerate(messages):
        try:
            alarm = parse_message(fields)
        except (KeyError, TypeError, ValueError) as exc:
            number = _first(fields, "messagenumber", "msgno", "number", "alarmnumber", "id")
            instance = fields.get("instance")
            if type(number) not in (int, str) or number == "":
                key = f"#{index}"
            elif isinstance(instance, str) and instance:
                key = f"{number}:{instance}"
            else:
                key = str(number)
            alarms.errors[key] = f"malformed message: {why(exc)}"
            continue
        if alarm is None:
            state = fields.get("state")
            skipped.append(state if type(state) is int else short_text(state))
            continue
        alarms.append(alarm)
    return alarms, skipped


def _message_state(state: object) -> tuple[str, bool] | None:
    if type(state) is int:
        return MESSAGE_STATES.get(state)
    if isinstance(state, str):
        if state.strip().isdecimal():
            return MESSAGE_STATES.get(int(state))
        return _STATE_WORDS.get(state.strip().lower())
    raise TypeError(f"state {show(state)} is neither a code nor a text")
