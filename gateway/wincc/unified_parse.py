"""The answers of WinCC Unified's GraphQL interface, parsed without I/O into the core's models.

Unified reports quality as enums (``quality``, ``subStatus``, ``limit``); they map onto the
quality byte ``QQSSSSLL`` the other dialects publish (main quality << 6 | sub-status << 2 |
limit), so ``GOOD_NON_CASCADE``/``NON_SPECIFIC``/``OK`` is 128 and ``GOOD_CASCADE`` 192.
Enum names are compared without case; a runtime that sends the byte itself is taken at
its word. The sub-status codes follow the PROFIBUS PA quality codes WinCC uses (the names
of the good ones are to be confirmed against a runtime); a name this table does not know
counts as non-specific, so the main quality still decides.

A malformed item costs its own tag (or alarm) an error entry; a malformed answer as a
whole is a ``WinCCProtocolError`` naming the operation.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

from gateway.core.models import (
    Alarm,
    AlarmList,
    Reading,
    ReadResult,
    TagType,
    new_reading,
    tag_type_of,
)
from gateway.core.timestamps import parse_optional_ts, parse_ts
from gateway.core.values import SCALARS, check_id, checked_value, short_text, show, why
from gateway.errors import WinCCProtocolError

MAIN_QUALITIES = ("BAD", "UNCERTAIN", "GOOD_NON_CASCADE", "GOOD_CASCADE")
"""Main quality by bits 7-6 of the quality byte."""

LIMITS = ("OK", "LOW_LIMIT_VIOLATION", "HIGH_LIMIT_VIOLATION", "CONSTANT")
"""Limit by bits 1-0 of the quality byte."""

SUB_STATUSES: dict[str, tuple[str | None, ...]] = {
    "BAD": (
        "NON_SPECIFIC",
        "CONFIGURATION_ERROR",
        "NOT_CONNECTED",
        "DEVICE_FAILURE",
        "SENSOR_FAILURE",
        "NO_COMM_WITH_LAST_USABLE",
        "NO_COMM_NO_USABLE",
        "OUT_OF_SERVICE",
    ),
    "UNCERTAIN": (
        "NON_SPECIFIC",
        "LAST_USABLE",
        "SUBSTITUTE",
        "INITIAL",
        "SENSOR_CONVERSION",
        "RANGE_VIOLATION",
        "SUB_NORMAL",
        "CONFIG_ERROR",
        "SIMULATED",
        "SENSOR_CALIBRATION",
    ),
    "GOOD_NON_CASCADE": (
        "NON_SPECIFIC",
        "ACTIVE_UPDATE_EVENT",
        "ACTIVE_ADVISORY_ALARM",
        "ACTIVE_CRITICAL_ALARM",
        "UNACK_UPDATE_EVENT",
        "UNACK_ADVISORY_ALARM",
        "UNACK_CRITICAL_ALARM",
        None,
        "INITIATE_FAIL_SAFE",
        "MAINTENANCE_REQUIRED",
    ),
    "GOOD_CASCADE": (
        "NON_SPECIFIC",
        "INIT_ACKNOWLEDGED",
        "INIT_REQUEST",
        "NOT_INVITED",
        None,
        "DO_NOT_SELECT",
        "LOCAL_OVERRIDE",
        None,
        "INITIATE_FAIL_SAFE",
    ),
}
"""Sub-status names by main quality, indexed by bits 5-2; ``None`` marks a code without a
name."""

_SPELLINGS = {
    "GOOD_NON_CASCADE": {"configuration_changed": 1, "update_event": 1, "initial_fail_safe": 8},
    "GOOD_CASCADE": {"initialization_acknowledged": 1, "initialization_request": 2},
}
"""Other spellings of good sub-statuses seen in documentation, taken alike."""

_MAIN = {name.lower(): code for code, name in enumerate(MAIN_QUALITIES)}
_SUB = {
    _MAIN[main.lower()]: {
        **{name.lower(): code for code, name in enumerate(names) if name},
        **_SPELLINGS.get(main, {}),
    }
    for main, names in SUB_STATUSES.items()
}
_LIMIT = {name.lower(): code for code, name in enumerate(LIMITS)}

TAG_OBJECTS = frozenset({"tag", "simpletag", "structuretag"})
"""Browse object types that are tags; alarms, loggings and the like are not."""

ALARM_STATES: dict[str, tuple[str, bool]] = {
    "raised": ("came", False),
    "raised_acknowledged": ("came", True),
    "raised_cleared": ("went", False),
    "raised_acknowledged_cleared": ("went", True),
    "raised_cleared_acknowledged": ("went", True),
}
"""Active alarm states as (state, acknowledged); ``NORMAL`` and ``REMOVED`` are not active."""


def _enum(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} is {show(value)}, not an enum name")
    return value.strip().lower()


def quality_byte(quality: object) -> int:
    """The quality byte of a Unified ``quality`` object (or of a byte sent as such)."""
    if type(quality) is int:
        if not 0 <= quality <= 255:
            raise ValueError(f"quality {quality} is not a byte")
        return quality
    if type(quality) is not dict:
        raise TypeError(f"quality is {show(quality)}, not an object")
    names = (quality.get("quality"), quality.get("subStatus"), quality.get("limit"))
    try:
        return _byte_of(*names)
    except TypeError:  # a list or an object where a name goes cannot be looked up
        return _byte_of.__wrapped__(*names)  # so it raises what is wrong with it


@lru_cache(maxsize=1024)  # a runtime sends a few combinations: a fifth of reading them
def _byte_of(main_name: object, sub_name: object, limit_name: object) -> int:
    """The byte of a quality's main quality, sub-status and limit names."""
    main = _MAIN.get(_enum(main_name, "quality"))
    if main is None:
        raise ValueError(f"quality {show(main_name)} is not a known main quality")
    sub = _SUB[main].get(_enum(sub_name, "subStatus"), 0) if sub_name is not None else 0
    limit = _LIMIT.get(_enum(limit_name, "limit"), 0) if limit_name is not None else 0
    return main << 6 | sub << 2 | limit


def _reading(name: str, value: Any) -> Reading:
    """A reading from a ``Value`` object; ``KeyError``/``TypeError``/``ValueError`` if
    malformed."""
    if type(value) is not dict:
        raise TypeError(f"value is {show(value)}, not an object")
    raw = value["value"]
    if type(raw) not in SCALARS or type(raw) is str:
        raw = checked_value(raw)
    stamp = value["timestamp"]
    if not isinstance(stamp, str):
        raise TypeError(f"timestamp is {show(stamp)}, not a text")
    return new_reading((name, raw, quality_byte(value["quality"]), parse_ts(stamp)))


def item_error(item: dict[str, Any]) -> str | None:
    """The error an item reports, if any: an ``error`` with a code other than 0."""
    error = item.get("error")
    if error is None:
        return None
    if type(error) is not dict:
        return short_text(error)
    code = error.get("code")
    if code in (0, "0") or (code is None and not error.get("description")):
        return None  # a success carries error {code: "0"}
    description = error.get("description")
    text = description if isinstance(description, str) and description else "error"
    return f"{short_text(text)} (code {short_text(code)})"


def parse_tag_values(names: Sequence[str], items: Any) -> ReadResult:
    """Readings and per-name errors of a ``tagValues`` answer; a name the answer does not
    mention is an error too, so no requested tag goes silently missing."""
    if type(items) is not list:
        raise WinCCProtocolError(f"tagValues: the answer is {show(items)}, not a list")
    result = ReadResult()
    readings, errors = result.readings, result.errors
    wanted = set(names)
    for item in items:
        name = item.get("name") if type(item) is dict else None
        if type(name) is not str or name not in wanted or name in errors:
            continue
        failure = item_error(item)
        if failure is not None:
            errors[name] = failure
            continue
        try:
            readings.append(_reading(name, item["value"]))
        except (KeyError, TypeError, ValueError) as exc:
            errors[name] = f"malformed reading: {why(exc)}"
    result.mark_missing(names, wanted)
    return result


def parse_notification(item: Any) -> tuple[str, Reading | None, str | None]:
    """One ``tagValues`` subscription notification: the tag's name, its reading, or why
    there is none (an error, or a tag that was removed)."""
    if type(item) is not dict or type(item.get("name")) is not str:
        raise WinCCProtocolError(f"tagValues notification: {show(item)} names no tag")
    name: str = item["name"]
    reason = item.get("notificationReason")
    if isinstance(reason, str) and reason.strip().lower().startswith("removed"):
        return name, None, f"removed from the runtime ({short_text(reason)})"
    failure = item_error(item)
    if failure is not None:
        return name, None, failure
    try:
        return name, _reading(name, item["value"]), None
    except (KeyError, TypeError, ValueError) as exc:
        return name, None, f"malformed reading: {why(exc)}"


def parse_write_results(items: Any) -> dict[str, str | None]:
    """Per name, the error of a ``writeTagValues`` answer (None: written)."""
    if type(items) is not list:
        raise WinCCProtocolError(f"writeTagValues: the answer is {show(items)}, not a list")
    return {
        item["name"]: item_error(item)
        for item in items
        if type(item) is dict and type(item.get("name")) is str
    }


def parse_browse(items: Any) -> Iterable[tuple[str, TagType | None]]:
    """Tag names and types of a ``browse`` answer; other objects (alarms, loggings) and
    items without a name are left out."""
    if type(items) is not list:
        raise WinCCProtocolError(f"browse: the answer is {show(items)}, not a list")
    for item in items:
        if type(item) is not dict:
            continue
        name = item.get("name")
        kind = item.get("objectType")
        if not isinstance(name, str) or not name:
            continue
        if isinstance(kind, str) and kind.strip().lower() not in TAG_OBJECTS:
            continue
        structure = isinstance(kind, str) and kind.strip().lower() == "structuretag"
        yield name, None if structure else _tag_type(item.get("dataType"))


def _tag_type(name: object) -> TagType | None:
    """A tag always has a type: one the gateway does not know is ``UNKNOWN``, not a folder."""
    found = tag_type_of(name)
    return TagType.UNKNOWN if found is None else found


def parse_logged_values(name: str, items: Any) -> list[Reading]:
    """The archived readings of one tag from a ``loggedTagValues`` answer."""
    if type(items) is not list:
        raise WinCCProtocolError(f"loggedTagValues: the answer is {show(items)}, not a list")
    readings: list[Reading] = []
    for item in items:
        if type(item) is not dict:
            continue
        failure = item_error(item)
        if failure is not None:
            raise WinCCProtocolError(f"loggedTagValues of {name}: {failure}")
        values = item.get("values")
        if type(values) is not list:
            continue
        for entry in values:
            try:
                readings.append(_reading(name, entry["value"]))
            except (KeyError, TypeError, ValueError) as exc:
                raise WinCCProtocolError(
                    f"loggedTagValues of {name}: malformed value: {why(exc)}"
                ) from exc
    return readings


def _time(text: object) -> int | None:
    """An alarm's time: Unified says "never" with the epoch, others with null or the
    .NET minimum date."""
    if text is not None and not isinstance(text, str):
        raise TypeError(f"a time is {show(text)}, not a text")
    ms = parse_optional_ts(text)
    return None if ms == 0 else ms


def alarm_id(name: str, instance: int) -> str:
    """The gateway's id of an alarm: its name, and its instance when there are several."""
    return name if instance == 0 else f"{name}:{instance}"


def _alarm_tag(name: str) -> str:
    """The tag an alarm watches, from its name ``System::Tag:Alarm``."""
    local = name.partition("::")[2] or name
    return local.rpartition(":")[0] or local


def _text(value: object) -> str:
    """An alarm text: a string, or the first of a list of texts (one per language)."""
    if isinstance(value, list):
        value = next((item for item in value if isinstance(item, str)), "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise TypeError(f"eventText is {show(value)}, not a text")
    return value


def parse_alarm(item: Any) -> tuple[Alarm | None, tuple[str, int]]:
    """An active alarm (None when its state says it is not active, or it was removed),
    and the name and instance WinCC acknowledges it by."""
    if type(item) is not dict:
        raise TypeError(f"an alarm is {show(item)}, not an object")
    name = item["name"]
    if not isinstance(name, str) or not name:
        raise TypeError(f"name is {show(name)}, not a text")
    instance = item.get("instanceID") or 0
    if type(instance) is not int:
        raise TypeError(f"instanceID is {show(instance)}, not a whole number")
    key = (name, instance)
    reason = item.get("notificationReason")
    if isinstance(reason, str) and reason.strip().lower().startswith("removed"):
        return None, key
    state = ALARM_STATES.get(_enum(item["state"], "state"))
    if state is None:
        return None, key
    kind, acked = state
    priority = item.get("priority")
    return (
        Alarm(
            id=check_id(alarm_id(name, instance)),
            tag=_alarm_tag(name),
            text=_text(item.get("eventText")),
            priority=priority if type(priority) is int else 0,
            state=kind,
            acked=acked,
            came_at=_time(item.get("raiseTime")),
            went_at=_time(item.get("clearTime")) if kind == "went" else None,
            acked_at=_time(item.get("acknowledgmentTime")) if acked else None,
        ),
        key,
    )


def parse_active_alarms(items: Any) -> tuple[AlarmList, dict[str, tuple[str, int]]]:
    """The active alarms of an ``activeAlarms`` answer, and each one's name and instance;
    an alarm that cannot be read is an error of its name only."""
    if type(items) is not list:
        raise WinCCProtocolError(f"activeAlarms: the answer is {show(items)}, not a list")
    alarms = AlarmList()
    keys: dict[str, tuple[str, int]] = {}
    for index, item in enumerate(items):
        try:
            alarm, key = parse_alarm(item)
        except (KeyError, TypeError, ValueError) as exc:
            name = item.get("name") if type(item) is dict else None
            alarms.errors[name if isinstance(name, str) and name else f"#{index}"] = (
                f"malformed alarm: {why(exc)}"
            )
            continue
        if alarm is not None:
            alarms.append(alarm)
            keys[alarm.id] = key
    return alarms, keys
