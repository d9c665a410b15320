"""What the classic client makes of every variation real servers were seen to send.

Pure parsing first, then a stub server for the answers that need the client's requests
(empty bodies, write answers, paging of configuration lists, message lists).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from pydantic import SecretStr

from gateway.core.models import Alarm, AlarmList, Reading, TagInfo, TagType
from gateway.core.timestamps import parse_ts
from gateway.errors import WinCCNotFound, WinCCProtocolError, WinCCRejected
from gateway.wincc import classic
from gateway.wincc.classic import ClassicClient, base_url
from gateway.wincc.classic_parse import (
    EMPTY_ANSWER,
    archive_map,
    build_tree,
    item_failure,
    parse_config_page,
    parse_history_answer,
    parse_message,
    parse_values_answer,
)
from gateway.wincc.connect import open_client
from gateway.wincc.settings import ClassicSettings
from gateway.wincc.shape import describe_shape

TS = "2026-11-24T10:00:00.123Z"
MS = parse_ts(TS)


def item(name: str, **fields: Any) -> dict[str, Any]:
    """A well-formed read item with ``fields`` replaced; a field set to ``...`` is dropped."""
    base = {
        "variableName": name,
        "dataType": 9,
        "value": 1.5,
        "timestamp": TS,
        "qualitycode": 128,
        "errorcode": 0,
        "error": "",
    }
    base.update(fields)
    return {key: value for key, value in base.items() if value is not ...}


# --- tag values -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "wrap",
    [
        lambda items: items,
        lambda items: {"values": items},
        lambda items: {"Values": items},
        lambda items: {"variables": items},
    ],
    ids=["array", "values", "Values", "variables"],
)
@pytest.mark.parametrize("quality_key", ["qualitycode", "qualityCode", "QualityCode", "quality"])
def test_every_shape_and_quality_key_gives_the_same_readings(
    wrap: Callable[[list[dict[str, Any]]], Any], quality_key: str
) -> None:
    items = [
        item("b", value=True, **{"qualitycode": ..., quality_key: 128}),
        item("a", value="x", **{"qualitycode": ..., quality_key: 0x48}),
    ]
    result = parse_values_answer(["b", "a"], wrap(items))
    assert result.readings == [Reading("b", True, 128, MS), Reading("a", "x", 0x48, MS)]
    assert result.errors == {}


def test_field_names_match_in_any_case() -> None:
    shouting = {key.upper(): value for key, value in item("a").items()}
    assert parse_values_answer(["a"], [shouting]).readings == [Reading("a", 1.5, 128, MS)]


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"error": "variable not found"}, "variable not found"),
        ({"errorcode": 7}, "errorcode 7"),
        ({"error": "no access", "errorcode": 5}, "no access (errorcode 5)"),
        ({"error": "   ", "errorcode": "12"}, "errorcode 12"),
        ({"value": ...}, "malformed reading: no 'value'"),
        ({"qualitycode": ...}, "malformed reading: no 'qualitycode'"),
        ({"qualitycode": "128"}, "not a whole number"),
        ({"timestamp": "yesterday"}, "yesterday"),
        ({"timestamp": "9999-12-31T23:59:59-14:00"}, "outside the years 1 to 9999"),
        ({"value": json.loads("[" * 65 + "]" * 65)}, "nested more than 64"),
        ({"errorcode": [[[]]]}, "errorcode a list of 1"),
    ],
)
def test_a_failed_or_malformed_item_is_an_error_of_its_name_only(
    fields: dict[str, Any], reason: str
) -> None:
    answer = [item("good"), item("bad", **fields), item("also-good")]
    result = parse_values_answer(["good", "bad", "also-good"], answer)
    assert [r.name for r in result.readings] == ["good", "also-good"]
    assert list(result.errors) == ["bad"]
    assert reason in result.errors["bad"]


@pytest.mark.parametrize("fields", [{"errorcode": 0}, {"errorcode": "0"}, {"error": None}])
def test_errorcode_zero_and_no_error_text_is_success(fields: dict[str, Any]) -> None:
    assert parse_values_answer(["a"], [item("a", **fields)]).errors == {}


def test_names_spelled_otherwise_by_the_server_map_back_and_missing_ones_are_errors() -> None:
    answer = [item("SYSTEM1.tank.LEVEL"), item("someone-else"), item("x", error="e")]
    result = parse_values_answer(["System1.Tank.Level", "lost", "x"], answer)
    assert result.readings == [Reading("System1.Tank.Level", 1.5, 128, MS)]
    assert result.errors == {"x": "e", "lost": "missing from the server's answer"}


@pytest.mark.parametrize(
    "answer", [{}, {"values": None}, {"values": {"a": 1}}, "text", 5, [1, 2], [item("a"), "x"]]
)
def test_an_answer_without_a_list_of_objects_is_a_protocol_error(answer: Any) -> None:
    with pytest.raises(WinCCProtocolError, match="POST /tagManagement/Values"):
        parse_values_answer(["a"], answer)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, None),
        ({"error": "", "errorcode": 0}, None),
        ({"error": "bad"}, "bad"),
        ({"errorcode": -1}, "errorcode -1"),
        ({"error": "bad", "errorcode": 3}, "bad (errorcode 3)"),
    ],
)
def test_item_failure(fields: dict[str, Any], expected: str | None) -> None:
    assert item_failure(fields) == expected


# --- history --------------------------------------------------------------------------


def values(*numbers: float) -> list[dict[str, Any]]:
    return [
        {"value": n, "timestamp": f"2026-11-24T10:00:0{i}.000Z", "qualityCode": 128}
        for i, n in enumerate(numbers)
    ]


@pytest.mark.parametrize(
    "answer",
    [
        [{"name": "A", "variables": [{"name": "T_arch", "values": values(1, 2)}]}],
        {
            "archives": [
                {"name": "A", "variables": [{"name": "other", "values": values(9)}]},
                {
                    "archiveName": "A",
                    "variables": [{"variableName": "T_arch", "values": values(1, 2)}],
                },
            ]
        },
        [{"variableName": "Tag", "values": values(1, 2)}],
        {"variables": [{"name": "T_arch", "Values": values(1, 2)}]},
        values(1, 2),
        {"values": values(1, 2)},
        list(reversed(values(1, 2))),
    ],
    ids=["echoed", "archives", "by tag name", "variables", "bare", "values", "newest first"],
)
def test_history_answers_in_every_shape(answer: Any) -> None:
    readings = parse_history_answer("Tag", "T_arch", answer)
    assert [(r.name, r.value, r.quality) for r in readings] == [("Tag", 1, 128), ("Tag", 2, 128)]
    assert readings[0].ts_ms < readings[1].ts_ms


def test_history_of_no_values_is_empty_but_an_empty_body_is_an_error() -> None:
    assert (
        parse_history_answer("T", "T", [{"name": "A", "variables": [{"name": "T", "values": []}]}])
        == []
    )
    assert parse_history_answer("T", "T", []) == []
    with pytest.raises(WinCCProtocolError, match="empty body"):
        parse_history_answer("T", "T", None)


@pytest.mark.parametrize(
    ("answer", "error", "text"),
    [
        (
            [
                {
                    "name": "A",
                    "variables": [{"name": "T", "values": [], "errorcode": 4, "error": "x"}],
                }
            ],
            WinCCRejected,
            r"x \(errorcode 4\)",
        ),
        ([{"name": "A", "error": "unknown archive"}], WinCCRejected, "unknown archive"),
        ({"archives": []}, WinCCProtocolError, "no values of T"),
        (
            [{"name": "A", "variables": [{"name": "U", "values": values(1)}]}],
            WinCCProtocolError,
            "no values",
        ),
        ({"values": [{"value": 1, "timestamp": TS}]}, WinCCProtocolError, "no 'qualitycode'"),
    ],
    ids=["variable error", "archive error", "nothing", "another tag", "no quality"],
)
def test_history_failures(answer: Any, error: type[Exception], text: str) -> None:
    with pytest.raises(error, match=text):
        parse_history_answer("T", "T", answer)


# --- configuration lists --------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "point"),
    [
        ([{"name": "a"}], None),
        ({"variables": [{"name": "a"}], "continuationPoint": 1000}, "1000"),
        ({"Variables": [{"Name": "a"}], "ContinuationPoint": "c-2"}, "c-2"),
        ({"items": [{"name": "a"}], "continuationPoint": None}, None),
        ({"values": [{"name": "a"}], "continuationPoint": ""}, None),
    ],
)
def test_config_pages(answer: Any, point: str | None) -> None:
    items, next_point = parse_config_page("GET x", answer)
    assert items == [{"name": "a"}]
    assert next_point == point


@pytest.mark.parametrize("answer", [None, {"count": 3}, ["a"], {"variables": [1]}])
def test_a_config_page_without_objects_is_a_protocol_error(answer: Any) -> None:
    with pytest.raises(WinCCProtocolError, match="GET x"):
        parse_config_page("GET x", answer)


def test_the_tree_comes_from_dotted_names() -> None:
    items: list[dict[str, Any]] = [
        {"name": "Motor1.Speed", "datatype": 8},
        {"name": "Motor1", "datatype": 6},  # a tag that is also a prefix
        {"variablename": "Plain", "datatype": 1},
        {"name": "Tank.Level.Raw", "datatype": 12},  # raw data: no tag type
        {"name": "Tank.Mode", "datatype": 11},
        {"name": ""},
        {"datatype": 1},
    ]
    tree = build_tree(items)
    assert tree[""] == [
        TagInfo("Motor1", TagType.INT, has_children=True, writable=True),
        TagInfo("Plain", TagType.BOOL, has_children=False, writable=True),
        TagInfo("Tank", None, has_children=True, writable=False),
    ]
    assert tree["Motor1"] == [TagInfo("Motor1.Speed", TagType.FLOAT, False, True)]
    assert tree["Tank"] == [
        TagInfo("Tank.Level", None, has_children=True, writable=False),
        TagInfo("Tank.Mode", TagType.STRING, has_children=False, writable=True),
    ]
    assert tree["Tank.Level"] == [TagInfo("Tank.Level.Raw", None, False, True)]


def test_archive_map() -> None:
    items = [
        {"name": "T1", "archivename": "A"},
        {"name": "T2_arch", "archive": "B", "processvariable": "T2"},
        {"name": "T3"},  # no archive: not usable
        {"name": "T1", "archivename": "Later"},  # the first archive of a tag wins
    ]
    assert archive_map(items) == {"T1": ("A", "T1"), "T2": ("B", "T2_arch")}


def test_base_url() -> None:
    assert base_url("https://wincc:34569") == "https://wincc:34569/WinCCRestService"
    assert base_url("https://wincc:34569/") == "https://wincc:34569/WinCCRestService"
    assert (
        base_url("https://wincc/Proxy/WinCCRestService/") == "https://wincc/Proxy/WinCCRestService"
    )


# --- messages -------------------------------------------------------------------------


def message(**fields: Any) -> dict[str, Any]:
    base = {"messagenumber": 12, "state": 1, "timestamp": TS, "text1": "Hot", "priority": 4}
    base.update(fields)
    return {key: value for key, value in base.items() if value is not ...}


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (1, ("came", False, MS, None, None)),
        (2, ("went", False, None, MS, None)),
        (3, ("came", True, None, None, MS)),
        (0x10, ("came", True, None, None, MS)),
        (0x13, ("went", False, None, MS, None)),
        ("2", ("went", False, None, MS, None)),
        ("Came in", ("came", False, MS, None, None)),
        ("acknowledged", ("came", True, None, None, MS)),
    ],
)
def test_message_states(state: object, expected: tuple[Any, ...]) -> None:
    alarm = parse_message(message(state=state))
    assert alarm is not None
    assert (alarm.state, alarm.acked, alarm.came_at, alarm.went_at, alarm.acked_at) == expected
    assert (alarm.id, alarm.text, alarm.priority, alarm.tag) == ("12", "Hot", 4, "")


@pytest.mark.parametrize("state", [4, 6, "locked"])
def test_states_that_are_no_alarms_are_skipped(state: object) -> None:
    assert parse_message(message(state=state)) is None


def test_message_variants() -> None:
    alarm = parse_message(
        message(
            messagenumber=...,
            msgno="7",
            instance="Tank1",
            state=1,
            acknowledged=True,
            timestamp=...,
            datetime=TS,
            text1=...,
            text="Level",
            priority="high",
            alarmtag=4711,
        )
    )
    assert alarm == Alarm("7:Tank1", "4711", "Level", 0, "came", True, MS, None, None)


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"messagenumber": ...}, KeyError),
        ({"messagenumber": [1]}, TypeError),
        ({"state": {"code": 1}}, TypeError),
        ({"timestamp": "soon"}, ValueError),
    ],
)
def test_unreadable_messages_raise(fields: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_message(message(**fields))


# --- shapes ---------------------------------------------------------------------------


def test_describe_shape_shows_types_and_keys_never_values() -> None:
    data = [item("Secret.Tag", value=3.25), item("b", value=True, error="lost", errorcode=2)]
    shape = describe_shape(data)
    assert shape.startswith("[2 x {dataType: int, error: str, errorcode: int, ")
    assert "value: bool | float" in shape
    assert "Secret" not in shape
    assert "3.25" not in shape
    assert "lost" not in shape
    assert describe_shape({"values": [], "n": None}) == "{n: null, values: []}"
    wide = describe_shape({f"k{i:02}": i for i in range(40)})
    assert wide.endswith("k29: int, ...}")
    assert describe_shape([[[[[[1]]]]]]) == "[1 x [1 x [1 x [1 x [1 x [1 x int]]]]]]"


# --- a stub server for what needs requests --------------------------------------------


@dataclass
class Stub:
    """Answers per (method, path); records every request."""

    url: str = ""
    answers: dict[tuple[str, str], list[tuple[int, bytes]]] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, str], Any]] = field(default_factory=list)

    def answer(self, method: str, path: str, *bodies: Any, status: int = 200) -> None:
        """Queue answers; the last one repeats. ``b""`` is an empty body."""
        self.answers[(method, "/WinCCRestService" + path)] = [
            (status, body if isinstance(body, bytes) else orjson.dumps(body)) for body in bodies
        ]


@pytest.fixture
async def stub() -> AsyncIterator[tuple[Stub, ClassicClient]]:
    state = Stub()

    async def anything(request: web.Request) -> web.Response:
        raw = await request.read()
        body = orjson.loads(raw) if raw else None
        state.requests.append((request.method, request.path, dict(request.query), body))
        queued = state.answers.get((request.method, request.path))
        if not queued:
            return web.json_response({"error": "nothing here"}, status=404)
        status, payload = queued.pop(0) if len(queued) > 1 else queued[0]
        return web.Response(status=status, body=payload, content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", anything)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    state.url = f"http://{host}:{port}"
    settings = ClassicSettings(
        url=state.url,
        dialect="classic",
        username="u",
        password=SecretStr("p"),
        allow_insecure_http=True,
        alarm_filter="F",
        batch_size=4,
    )
    async with open_client(settings) as client:
        assert isinstance(client, ClassicClient)
        yield state, client
    await runner.cleanup()


Stubbed = tuple[Stub, ClassicClient]


async def test_empty_bodies_are_errors_never_no_data(stub: Stubbed) -> None:
    state, client = stub
    state.answer("POST", "/tagManagement/Values", b"")
    result = await client.read_many(["a", "b", "c"])
    assert result.readings == []
    assert result.errors == dict.fromkeys(["a", "b", "c"], EMPTY_ANSWER)
    state.answer("GET", "/tagManagement/Value/a", b"")
    with pytest.raises(WinCCNotFound, match="empty body"):
        await client.read("a")
    state.answer("PUT", "/tagManagement/Value/a", b"")
    with pytest.raises(WinCCNotFound, match="empty body"):
        await client.write("a", 1)
    state.answer("GET", "/alarmLogging/MessageList/F", b"")
    with pytest.raises(WinCCProtocolError, match="empty answer"):
        await client.active_alarms()


@pytest.mark.parametrize(
    "answer", [item("a"), [item("a")], {"values": [item("a")]}, {"Values": [item("A")]}]
)
async def test_single_reads_in_every_shape(stub: Stubbed, answer: Any) -> None:
    state, client = stub
    state.answer("GET", "/tagManagement/Value/a", answer)
    assert await client.read("a") == Reading("a", 1.5, 128, MS)


@pytest.mark.parametrize("answer", [[], {"values": []}, "x", {"value": 1}])
async def test_single_reads_without_a_reading_are_protocol_errors(
    stub: Stubbed, answer: Any
) -> None:
    state, client = stub
    state.answer("GET", "/tagManagement/Value/a", answer)
    with pytest.raises(WinCCProtocolError, match="GET /tagManagement/Value/a"):
        await client.read("a")


async def test_a_write_answered_without_a_reading_is_read_back(stub: Stubbed) -> None:
    state, client = stub
    state.answer("PUT", "/tagManagement/Value/a", {"variableName": "a", "errorcode": 0})
    state.answer("GET", "/tagManagement/Value/a", item("a", value=7.0))
    assert await client.write("a", 7.0) == Reading("a", 7.0, 128, MS)
    assert [(method, body) for method, _, _, body in state.requests] == [
        ("PUT", {"value": 7.0}),
        ("GET", None),
    ]


@pytest.mark.parametrize(
    ("answer", "text"),
    [
        ({"variableName": "a", "errorcode": 17, "error": ""}, "errorcode 17"),
        ([{"variableName": "a", "errorcode": 0, "error": "denied"}], "denied"),
    ],
)
async def test_write_failures_in_the_answer(stub: Stubbed, answer: Any, text: str) -> None:
    state, client = stub
    state.answer("PUT", "/tagManagement/Value/a", answer)
    with pytest.raises(WinCCRejected, match=text):
        await client.write("a", 1)


async def test_bare_array_pages_continue_at_their_offset(
    stub: Stubbed, monkeypatch: pytest.MonkeyPatch
) -> None:
    state, client = stub
    monkeypatch.setattr(classic, "CONFIG_PAGE", 2)
    pages = [[{"name": "A.x", "dataType": 1}, {"name": "A.y", "dataType": 1}], [{"name": "B"}]]
    state.answer("GET", "/tagManagement/variables", *pages)
    assert [info.name for info in await client.browse("")] == ["A", "B"]
    assert [query for _, _, query, _ in state.requests] == [
        {"itemLimit": "2"},
        {"itemLimit": "2", "continuationPoint": "2"},
    ]
    assert [info.name for info in await client.browse("A")] == ["A.x", "A.y"]
    assert len(state.requests) == 2  # the list is reused, not fetched per folder


async def test_a_server_that_ignores_paging_is_a_protocol_error(
    stub: Stubbed, monkeypatch: pytest.MonkeyPatch
) -> None:
    state, client = stub
    monkeypatch.setattr(classic, "CONFIG_PAGE", 2)
    state.answer("GET", "/tagManagement/variables", [{"name": "a"}, {"name": "b"}])
    with pytest.raises(WinCCProtocolError, match="ignores continuationPoint"):
        await client.browse("")
    state.requests.clear()
    state.answer("GET", "/tagManagement/variables", {"variables": [], "continuationPoint": "c"})
    with pytest.raises(WinCCProtocolError, match="'c' repeats"):
        await client.browse("")


async def test_a_list_longer_than_asked_for_is_taken_whole(
    stub: Stubbed, monkeypatch: pytest.MonkeyPatch
) -> None:
    state, client = stub
    monkeypatch.setattr(classic, "CONFIG_PAGE", 2)
    state.answer("GET", "/tagManagement/variables", [{"name": n} for n in "abc"])
    assert [info.name for info in await client.browse("")] == ["a", "b", "c"]
    assert len(state.requests) == 1


async def test_message_lists_in_other_shapes_and_states(
    stub: Stubbed, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.wincc.classic")
    state, client = stub
    messages = [
        {"MessageNumber": 1, "State": 1, "TimeStamp": TS, "Text1": "A", "Priority": 2},
        {"MsgNo": 2, "State": 4, "DateTime": TS},  # locked: no alarm
        {"MsgNo": 3, "State": 4, "DateTime": TS},
    ]
    state.answer("GET", "/alarmLogging/MessageList/F", {"messages": messages})
    for _ in range(2):
        assert [a.id for a in await client.active_alarms()] == ["1"]
    skipped = [r for r in caplog.records if "skipping messages in state 4" in r.getMessage()]
    assert len(skipped) == 1


@pytest.mark.parametrize("answer", [{"alerts": []}, [5], {"messages": "many"}])
async def test_malformed_message_lists_are_protocol_errors(stub: Stubbed, answer: Any) -> None:
    state, client = stub
    state.answer("GET", "/alarmLogging/MessageList/F", answer)
    with pytest.raises(WinCCProtocolError, match="malformed message list"):
        await client.active_alarms()


async def test_an_unreadable_message_is_an_error_of_its_number_only(stub: Stubbed) -> None:
    """The others are alarms; a message with a time the format cannot carry is no crash."""
    state, client = stub
    messages = [
        {"state": 1},
        {"messageNumber": 2, "state": 1, "time": 5},
        {"messageNumber": 3, "state": 1, "time": "9999-12-31T23:59:59-14:00"},
        {"messageNumber": 4, "state": 1, "time": TS},
        {"messageNumber": 5, "state": 2, "time": "0001-01-01T00:00:00Z"},
    ]
    state.answer("GET", "/alarmLogging/MessageList/F", messages)
    alarms = await client.active_alarms()
    assert [(a.id, a.came_at, a.went_at) for a in alarms] == [("4", MS, None), ("5", None, None)]
    assert isinstance(alarms, AlarmList)
    assert set(alarms.errors) == {"#0", "2", "3"}
    assert "outside the years 1 to 9999" in alarms.errors["3"]


async def test_history_repeating_one_time_beyond_a_page_is_a_protocol_error(
    stub: Stubbed,
) -> None:
    state, _ = stub
    same = [{"value": i, "timestamp": TS, "qualitycode": 128} for i in range(3)]
    state.answer("GET", "/tagLogging/Variables", [{"name": "T", "archiveName": "A"}])
    state.answer("POST", "/tagLogging/Values", same)
    seen: list[Reading] = []
    async with aiohttp.ClientSession() as session:
        small = ClassicClient(session, base_url(state.url), "u", None, history_page=3)
        with pytest.raises(WinCCProtocolError, match="more than 3 values of T"):
            async for reading in small.history("T", 0, MS):
                seen.append(reading)  # noqa: PERF401 - keeps the readings before the error
    assert len(seen) == 3
    body = state.requests[-1][3]
    assert body == {
        "archives": [
            {
                "name": "A",
                "variables": [{"name": "T", "timeFrom": TS, "timeTo": TS, "maxValues": 3}],
            }
        ]
    }


async def test_history_goes_on_past_pages_shorter_than_asked_for(stub: Stubbed) -> None:
    state, _ = stub
    at = [f"2026-11-24T10:00:0{i}.000Z" for i in range(3)]
    pages = [
        [{"value": i, "timestamp": at[i], "qualitycode": 128} for i in numbers]
        for numbers in ((0, 1), (1, 2), (2,))
    ]
    state.answer("GET", "/tagLogging/Variables", {"variables": []})
    state.answer("POST", "/tagLogging/Values", *pages)
    async with aiohttp.ClientSession() as session:
        capped = ClassicClient(session, base_url(state.url), "u", None, archive="A")
        values = [r.value async for r in capped.history("T", 0, parse_ts(at[2]))]
    assert values == [0, 1, 2]
    bodies = [body for method, _, _, body in state.requests if method == "POST"]
    froms = [body["archives"][0]["variables"][0]["timeFrom"] for body in bodies]
    assert froms == ["1970-01-01T00:00:00.000Z", at[1], at[2]]


def test_data_types_named_in_words_map_to_tag_types_and_folders() -> None:
    """Some servers name ``dataType`` instead of giving the WinCC code."""
    items: list[dict[str, Any]] = [
        {"name": "A.dint", "datatype": "DINT"},
        {"name": "A.real", "datatype": "Real"},
        {"name": "A.bit", "datatype": "Bit"},
        {"name": "A.text", "datatype": "Text16"},
        {"name": "A.code", "datatype": "9"},
        {"name": "A.odd", "datatype": "Matrix"},
        {"name": "A.struct", "datatype": "Struct"},
    ]
    types = {child.name: child.type for child in build_tree(items)["A"]}
    assert types == {
        "A.dint": TagType.INT,
        "A.real": TagType.FLOAT,
        "A.bit": TagType.BOOL,
        "A.text": TagType.STRING,
        "A.code": TagType.FLOAT,
        "A.odd": TagType.UNKNOWN,
        "A.struct": None,
    }


def test_a_name_listed_twice_never_hides_one_that_is_missing() -> None:
    result = parse_values_answer(["a", "b", "c"], [item("b"), item("b"), item("c")])
    assert result.errors == {"a": "missing from the server's answer"}
