"""WinCC Unified's GraphQL answers into the core's models, including the variations a
runtime may send: enum case, a quality byte instead of enums, texts per language, the
epoch for "never", items with errors or without fields."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.core.models import Reading, TagType
from gateway.errors import WinCCProtocolError
from gateway.wincc import unified_parse
from gateway.wincc.settings import UNIFIED_GOOD_CODES
from gateway.wincc.unified_parse import (
    LIMITS,
    MAIN_QUALITIES,
    SUB_STATUSES,
    parse_active_alarms,
    parse_alarm,
    parse_browse,
    parse_logged_values,
    parse_notification,
    parse_tag_values,
    parse_write_results,
    quality_byte,
)

TS = "2026-12-01T10:00:00.123Z"
MS = 1_796_119_200_123


def value(raw: Any, quality: Any = None, ts: str = TS) -> dict[str, Any]:
    good = {"quality": "GOOD_NON_CASCADE", "subStatus": "NON_SPECIFIC", "limit": "OK"}
    return {"value": raw, "timestamp": ts, "quality": good if quality is None else quality}


@pytest.mark.parametrize(
    ("quality", "byte"),
    [
        ({"quality": "GOOD_NON_CASCADE", "subStatus": "NON_SPECIFIC", "limit": "OK"}, 128),
        ({"quality": "GOOD_CASCADE", "subStatus": "NON_SPECIFIC", "limit": "OK"}, 192),
        ({"quality": "good_cascade"}, 192),  # case, and missing parts taken as 0
        ({"quality": "BAD", "subStatus": "NOT_CONNECTED", "limit": "OK"}, 0x08),
        ({"quality": "UNCERTAIN", "subStatus": "LAST_USABLE", "limit": "CONSTANT"}, 0x47),
        ({"quality": "UNCERTAIN", "subStatus": "SOMETHING_NEW", "limit": "OK"}, 0x40),
        (192, 192),  # a runtime that sends the byte
    ],
)
def test_quality_enums_map_onto_the_classic_byte(quality: Any, byte: int) -> None:
    assert quality_byte(quality) == byte


@given(st.integers(0, 255))
def test_every_named_code_survives_the_trip_through_the_enums(code: int) -> None:
    main = MAIN_QUALITIES[code >> 6]
    names = SUB_STATUSES[main]
    sub = (code >> 2) & 0xF
    named = names[sub] if sub < len(names) else None
    fields = {"quality": main.lower(), "subStatus": named, "limit": LIMITS[code & 3]}
    expected = code if named is not None else code & ~0b111100
    assert quality_byte(fields) == expected  # a code without a name keeps main and limit
    assert (quality_byte(fields) in UNIFIED_GOOD_CODES) == main.startswith("GOOD")


@pytest.mark.parametrize("quality", [{"quality": "EXCELLENT"}, "GOOD", 300, None, {}])
def test_a_quality_that_cannot_be_read_is_refused(quality: Any) -> None:
    with pytest.raises((TypeError, ValueError)):
        quality_byte(quality)


def test_quality_names_are_remembered_but_only_those_that_could_be_read() -> None:
    """A combination of names seen once is looked up the next time; one that cannot be
    read is refused every time (even when it cannot be remembered), and the memory of
    them stays bounded whatever a runtime sends."""
    for _ in range(2):
        assert quality_byte({"quality": "GOOD_CASCADE", "limit": "HIGH_LIMIT_VIOLATION"}) == 194
        with pytest.raises(ValueError, match="not a known main quality"):
            quality_byte({"quality": "EXCELLENT"})
        with pytest.raises(TypeError, match="not an enum name"):
            quality_byte({"quality": ["GOOD_CASCADE"]})
    kept = unified_parse._byte_of.cache_info().maxsize
    assert kept is not None
    for n in range(kept + 10):
        assert quality_byte({"quality": "BAD", "subStatus": f"NEW_{n}"}) == 0
    assert unified_parse._byte_of.cache_info().currsize <= kept


def test_tag_values_give_readings_and_per_name_errors() -> None:
    items = [
        {"name": "A", "value": value(1.5), "error": {"code": "0", "description": ""}},
        {"name": "B", "value": None, "error": {"code": "2", "description": "not found"}},
        {"name": "C", "value": {"value": 1, "timestamp": "yesterday", "quality": 128}},
        {"name": "D", "value": value([1, 2])},
        {"name": "not asked", "value": value(1)},
    ]
    result = parse_tag_values(["A", "B", "C", "D", "E"], items)
    assert result.readings == [Reading("A", 1.5, 128, MS), Reading("D", [1, 2], 128, MS)]
    assert result.errors["B"] == "not found (code 2)"
    assert result.errors["C"].startswith("malformed reading")
    assert "E" in result.errors  # not in the answer: never silently missing
    with pytest.raises(WinCCProtocolError):
        parse_tag_values(["A"], {"A": 1})


def test_notifications_carry_a_reading_an_error_or_a_removal() -> None:
    assert parse_notification(
        {"name": "A", "value": value(True), "notificationReason": "Modified"}
    ) == (
        "A",
        Reading("A", True, 128, MS),
        None,
    )
    name, reading, why = parse_notification(
        {"name": "A", "notificationReason": "REMOVED (Name changed)"}
    )
    assert (name, reading) == ("A", None)
    assert why is not None and "removed" in why
    assert parse_notification({"name": "A", "error": {"code": 5, "description": "x"}})[2]
    with pytest.raises(WinCCProtocolError):
        parse_notification({"value": value(1)})


def test_write_results_name_their_errors() -> None:
    assert parse_write_results(
        [
            {"name": "A", "error": {"code": "0"}},
            {"name": "B", "error": {"code": "201", "description": "cannot convert"}},
        ]
    ) == {"A": None, "B": "cannot convert (code 201)"}


def test_browse_keeps_tags_and_structures_and_leaves_out_other_objects() -> None:
    items = [
        {"name": "Tank1", "objectType": "STRUCTURETAG", "dataType": "TankType"},
        {"name": "Tank1.Level", "objectType": "TAG", "dataType": "Real"},
        {"name": "Pump", "objectType": "simpleTag", "dataType": "Bool"},
        {"name": "Mixer", "objectType": "TAG", "dataType": "SomeUdt"},
        {"name": "Sys::Pump:High", "objectType": "ALARM"},
        {"name": "", "objectType": "TAG"},
        "junk",
    ]
    assert list(parse_browse(items)) == [
        ("Tank1", None),
        ("Tank1.Level", TagType.FLOAT),
        ("Pump", TagType.BOOL),
        ("Mixer", TagType.UNKNOWN),
    ]


def test_logged_values_are_the_readings_of_the_tag() -> None:
    items = [{"loggingTagName": "A:Log", "error": {"code": "0"}, "values": [{"value": value(3)}]}]
    assert parse_logged_values("A", items) == [Reading("A", 3, 128, MS)]
    with pytest.raises(WinCCProtocolError):
        parse_logged_values("A", [{"error": {"code": "1", "description": "no such logging"}}])


def alarm(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "HMI_RT_1::Tank1.Level:High",
        "instanceID": 0,
        "state": "RAISED",
        "priority": 10,
        "eventText": ["Tank 1 high", "Tank 1 hoch"],
        "raiseTime": TS,
        "acknowledgmentTime": "1970-01-01T00:00:00.000Z",
        "clearTime": "1970-01-01T00:00:00.000Z",
    }
    return base | fields


def test_alarms_take_state_times_and_texts_from_unified_fields() -> None:
    came, key = parse_alarm(alarm())
    assert came is not None
    assert key == ("HMI_RT_1::Tank1.Level:High", 0)
    assert (came.id, came.tag, came.text, came.state, came.acked) == (
        "HMI_RT_1::Tank1.Level:High",
        "Tank1.Level",
        "Tank 1 high",
        "came",
        False,
    )
    assert (came.came_at, came.went_at, came.acked_at) == (MS, None, None)
    gone, _ = parse_alarm(
        alarm(
            state="raised_cleared_acknowledged", instanceID=3, clearTime=TS, acknowledgmentTime=TS
        )
    )
    assert gone is not None
    assert (gone.id, gone.state, gone.acked, gone.went_at, gone.acked_at) == (
        "HMI_RT_1::Tank1.Level:High:3",
        "went",
        True,
        MS,
        MS,
    )
    assert parse_alarm(alarm(state="NORMAL"))[0] is None
    assert parse_alarm(alarm(notificationReason="Removed"))[0] is None


def test_an_alarm_that_cannot_be_read_is_an_error_of_its_name_only() -> None:
    alarms, keys = parse_active_alarms([alarm(), alarm(name="X", state=7), 5])
    assert [a.id for a in alarms] == ["HMI_RT_1::Tank1.Level:High"]
    assert set(alarms.errors) == {"X", "#2"}
    assert keys == {"HMI_RT_1::Tank1.Level:High": ("HMI_RT_1::Tank1.Level:High", 0)}
