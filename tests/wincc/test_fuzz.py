"""Every parser of every dialect, fed JSON of any shape and depth and mutated valid answers,
returns readings, per-item errors or a ``WinCCError``: nothing else, and nothing that
cannot be published (every time formats, every value encodes)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.core.models import Alarm, AlarmList, Reading, ReadResult, TagInfo, TagType
from gateway.core.payloads import alarm_payload, sample_payload
from gateway.errors import WinCCError
from gateway.wincc import classic, classic_parse, rest, rest_parse, shape
from gateway.wincc.memo import ReadingMemo

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TS = "2026-11-24T09:00:00.123Z"


def nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


HOSTILE: list[Any] = [
    "9999-12-31T23:59:59-14:00",
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00+01:00",
    "0001-01-01T00:00:00.0000000",
    "10000-01-01T00:00:00Z",
    "2026-13-45T99:00:00Z",
    "",
    "folder",
    "Struct",
    "REAL",
    "Matrix",
    "x" * 100_000,
    "9" * 5000,
    nested(1000),
    {"a": nested(200)},
    [None] * 1000,
    2**63 - 1,
    -(2**63),
    1.7976931348623157e308,
    -0.0,
    True,
    None,
]
"""Values real servers sent, or that broke parsers before."""

KEYS = [
    *("name", "value", "quality", "timestamp", "error", "type", "has_children", "writable"),
    *("values", "children", "alerts", "next", "token", "id", "tag", "text", "priority"),
    *("state", "acked", "came_at", "went_at", "acked_at"),
    *("variableName", "VariableName", "dataType", "qualityCode", "errorCode", "ErrorCode"),
    *("messages", "items", "variables", "archives", "continuationPoint", "messageNumber"),
    *("MsgNo", "instance", "DateTime", "Text1", "archiveName", "processVariable"),
]
"""Field names of both dialects, so random objects reach past the first key lookup."""

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.sampled_from([h for h in HOSTILE if not isinstance(h, list | dict)])
)
keys = st.sampled_from(KEYS) | st.text(max_size=10)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(keys, children, max_size=6),
    max_leaves=40,
)
anything = json_values | st.sampled_from(HOSTILE)
objects = st.dictionaries(keys, anything, max_size=8)


def mutated(valid: Any) -> st.SearchStrategy[Any]:
    """``valid`` with one node somewhere replaced by anything, or a key dropped."""

    @st.composite
    def build(draw: st.DrawFn) -> Any:
        data = orjson.loads(orjson.dumps(valid))  # a deep copy
        node, parent, key = data, None, None
        while isinstance(node, list | dict) and node and draw(st.booleans()):
            parent = node
            key = draw(st.sampled_from(range(len(node)) if isinstance(node, list) else list(node)))
            node = node[key]
        if parent is None:  # the whole answer: of the same JSON type, as _decode ensures
            return draw(objects if isinstance(valid, dict) else anything)
        if isinstance(parent, dict) and draw(st.integers(0, 4)) == 0:
            del parent[key]
        else:
            parent[key] = draw(anything)
        return data

    return build()


def rest_reading(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "value": 1.5, "quality": 192, "timestamp": TS, **fields}


REST_READ = {"values": [rest_reading("a"), rest_reading("b", value="x"), rest_reading("c")]}
REST_ALERTS = {
    "alerts": [
        {
            "id": "1",
            "tag": "a",
            "text": "t",
            "priority": 1,
            "state": "came",
            "acked": False,
            "came_at": TS,
            "went_at": None,
            "acked_at": None,
        }
    ]
}
REST_BROWSE = {
    "children": [
        {"name": "F", "type": "folder", "has_children": True, "writable": False},
        {"name": "T", "type": "REAL", "has_children": False, "writable": True},
    ]
}
REST_HISTORY = {"values": [rest_reading("a"), rest_reading("a")], "next": "c2"}
CLASSIC_VALUES = [
    {"variableName": n, "value": 1, "qualityCode": 192, "timestamp": TS, "errorCode": 0}
    for n in ("a", "b", "c")
]
CLASSIC_MESSAGES = {
    "messages": [
        {"messageNumber": 1, "state": 1, "timestamp": TS, "text1": "x", "priority": 2},
        {"MsgNo": 2, "State": "went", "DateTime": TS, "instance": "i"},
    ]
}
CLASSIC_CONFIG = {
    "variables": [{"name": "A.x", "dataType": 8}, {"name": "A.y", "dataType": "Int16"}],
    "continuationPoint": "p",
}
CLASSIC_HISTORY = [
    {
        "archiveName": "PV",
        "variables": [{"variableName": "a", "values": [{"value": 1, "timestamp": TS}]}],
    }
]


def publishable(readings: list[Reading]) -> None:
    """Each reading makes a payload: its time formats, its value encodes."""
    for reading in readings:
        payload = sample_payload(reading, 1, good=True)
        assert orjson.loads(payload)["ts"][4] == "-"


def alarms_publishable(alarms: list[Alarm]) -> None:
    for alarm in alarms:
        orjson.loads(alarm_payload(alarm))


def outcome(call: Callable[[], Any]) -> Any:
    """The parser's result, or None if it raised a ``WinCCError``; anything else fails."""
    try:
        return call()
    except WinCCError as exc:
        assert len(str(exc)) < 1000
        return None


def check_read(result: ReadResult | None, names: list[str]) -> None:
    if result is None:
        return
    publishable(result.readings)
    assert set(names) <= {r.name for r in result.readings} | set(result.errors)
    assert all(len(reason) < 1000 for reason in result.errors.values())


# --- rest ------------------------------------------------------------------------------

rest_objects = objects | st.just({}) | mutated(REST_READ)


@FUZZ
@given(data=objects | mutated(REST_READ))
def test_rest_bulk_read(data: dict[str, Any]) -> None:
    names = ["a", "b", "c"]
    memo = ReadingMemo()
    check_read(outcome(lambda: rest_parse.parse_read_answer(names, data)), names)
    for _ in range(2):  # the memo hands out what it kept
        check_read(outcome(lambda: rest_parse.parse_read_answer(names, data, memo)), names)


@FUZZ
@given(data=objects | mutated(rest_reading("a")))
def test_rest_single_read_and_write(data: dict[str, Any]) -> None:
    reading = outcome(lambda: rest_parse.parse_reading_answer("PUT", "/api/dp/a", data))
    if reading is not None:
        publishable([reading])


@FUZZ
@given(data=objects | mutated(REST_ALERTS))
def test_rest_alarms(data: dict[str, Any]) -> None:
    alarms = outcome(lambda: rest_parse.parse_alarms_answer(data))
    if alarms is not None:
        assert isinstance(alarms, AlarmList)
        alarms_publishable(alarms)


@FUZZ
@given(data=objects | mutated(REST_BROWSE))
def test_rest_browse(data: dict[str, Any]) -> None:
    children = outcome(lambda: rest_parse.parse_browse_answer("GET browse", data))
    for child in children or []:
        assert isinstance(child, TagInfo)
        assert child.type is None or isinstance(child.type, TagType)


@FUZZ
@given(data=objects | mutated(REST_HISTORY))
def test_rest_history(data: dict[str, Any]) -> None:
    page = outcome(lambda: rest_parse.parse_history_page("/api/history/a", "a", data))
    if page is not None:
        publishable(page[0])
        assert page[1] is None or isinstance(page[1], str)


@FUZZ
@given(data=objects | mutated({"token": "t"}))
def test_rest_login(data: dict[str, Any]) -> None:
    token = outcome(lambda: rest_parse.parse_login_answer(data))
    assert token is None or (isinstance(token, str) and token)


def encoded(data: Any) -> bytes:
    """``data`` as JSON; deeper than orjson writes, as the same depth of plain lists."""
    try:
        return orjson.dumps(data)
    except TypeError:
        return b"[" * 300 + b"]" * 300


def bodies(valid: Any) -> st.SearchStrategy[bytes]:
    """Answer bodies: encoded JSON of any shape, valid ones mutated, cut or deep, noise."""
    encodable = (json_values | mutated(valid)).map(encoded)
    return (
        encodable
        | st.binary(max_size=200)
        | st.integers(1, 3000).map(lambda d: b"[" * d + b"]" * d)
        | st.integers(1, 3000).map(lambda d: b'{"a":' * d + b"1" + b"}" * d)
        | st.builds(lambda body, cut: body[:cut], encodable, st.integers(0, 50))
    )


@FUZZ
@given(body=bodies(REST_READ), status=st.sampled_from([200, 204, 400, 404, 429, 500, 302]))
def test_rest_answer_bodies(body: bytes, status: int) -> None:
    data = outcome(lambda: rest._decode("POST", "/api/dp/read", status, body))
    if data is not None:
        assert isinstance(data, dict)
        check_read(outcome(lambda: rest_parse.parse_read_answer(["a"], data)), ["a"])


# --- classic ---------------------------------------------------------------------------


@FUZZ
@given(data=anything | mutated(CLASSIC_VALUES) | mutated({"values": CLASSIC_VALUES}))
def test_classic_bulk_read(data: Any) -> None:
    names = ["a", "b", "c"]
    memo = ReadingMemo()
    check_read(outcome(lambda: classic_parse.parse_values_answer(names, data)), names)
    check_read(outcome(lambda: classic_parse.parse_values_answer(names, data, memo)), names)
    assert isinstance(shape.describe_shape(data), str)


@FUZZ
@given(data=anything | mutated(CLASSIC_VALUES[0]) | mutated([CLASSIC_VALUES[0]]))
def test_classic_single_read_and_write(data: Any) -> None:
    reading = outcome(lambda: classic_parse.parse_value_answer("PUT", "/x", "a", data))
    if reading is not None:
        publishable([reading])


@FUZZ
@given(data=anything | mutated(CLASSIC_MESSAGES))
def test_classic_alarms(data: Any) -> None:
    found = outcome(lambda: classic_parse.parse_message_list("GET list", data))
    if found is not None:
        alarms, skipped = found
        alarms_publishable(alarms)
        assert all(type(state) in (int, str) for state in skipped)


@FUZZ
@given(data=anything | mutated(CLASSIC_CONFIG))
def test_classic_tag_list_and_archives(data: Any) -> None:
    page = outcome(lambda: classic_parse.parse_config_page("GET list", data))
    if page is not None:
        items, point = page
        assert point is None or isinstance(point, str)
        for children in classic_parse.build_tree(items).values():
            assert all(child.type is None or isinstance(child.type, TagType) for child in children)
        classic_parse.archive_map(items)


@FUZZ
@given(data=anything | mutated(CLASSIC_HISTORY))
def test_classic_history(data: Any) -> None:
    readings = outcome(lambda: classic_parse.parse_history_answer("a", "a", data))
    if readings is not None:
        publishable(readings)


@FUZZ
@given(body=bodies(CLASSIC_VALUES), status=st.sampled_from([200, 204, 400, 404, 500]))
def test_classic_answer_bodies(body: bytes, status: int) -> None:
    data = outcome(lambda: classic.decode_answer("POST", "/x", status, body))
    check_read(outcome(lambda: classic_parse.parse_values_answer(["a"], data)), ["a"])


@pytest.mark.parametrize("value", HOSTILE)
def test_every_hostile_value_in_every_field(value: Any) -> None:
    """Each of the values that broke parsers before, in each field of each valid answer."""
    answers: list[tuple[Any, Callable[[Any], Any]]] = [
        (REST_READ, lambda d: rest_parse.parse_read_answer(["a", "b", "c"], d)),
        (REST_ALERTS, rest_parse.parse_alarms_answer),
        (REST_BROWSE, lambda d: rest_parse.parse_browse_answer("GET browse", d)),
        (REST_HISTORY, lambda d: rest_parse.parse_history_page("/h", "a", d)),
        (CLASSIC_VALUES, lambda d: classic_parse.parse_values_answer(["a", "b", "c"], d)),
        (CLASSIC_MESSAGES, lambda d: classic_parse.parse_message_list("GET list", d)),
        (CLASSIC_HISTORY, lambda d: classic_parse.parse_history_answer("a", "a", d)),
        (
            CLASSIC_CONFIG,
            lambda d: classic_parse.build_tree(classic_parse.parse_config_page("GET", d)[0]),
        ),
    ]
    for valid, parse in answers:
        for data in every_replacement(valid, value):
            result = outcome(lambda data=data, parse=parse: parse(data))  # type: ignore[misc]
            if isinstance(result, ReadResult):
                publishable(result.readings)
            elif isinstance(result, AlarmList):
                alarms_publishable(result)
            elif isinstance(result, tuple) and isinstance(result[0], AlarmList):
                alarms_publishable(result[0])


def every_replacement(valid: Any, value: Any) -> list[Any]:
    """``valid`` once per node, with that node replaced by ``value``."""
    out: list[Any] = []

    def walk(path: list[Any]) -> None:
        node = valid
        for step in path:
            node = node[step]
        if path:
            copy = orjson.loads(orjson.dumps(valid))
            target = copy
            for step in path[:-1]:
                target = target[step]
            target[path[-1]] = value
            out.append(copy)
        if isinstance(node, dict):
            for key in node:
                walk([*path, key])
        elif isinstance(node, list):
            for index in range(len(node)):
                walk([*path, index])

    walk([])
    return out
