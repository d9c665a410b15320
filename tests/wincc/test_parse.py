"""What the client makes of answers the simulator never gives: malformed items and bodies."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest
from aiohttp import web
from pydantic import SecretStr

from gateway.core.models import Reading, TagType
from gateway.core.timestamps import format_ts, parse_ts
from gateway.errors import WinCCProtocolError, WinCCRejected
from gateway.wincc.base import WinCCClient
from gateway.wincc.concurrency import run_all
from gateway.wincc.connect import open_client
from gateway.wincc.rest_parse import parse_alarms_answer, parse_browse_answer, parse_read_answer
from gateway.wincc.settings import RestSettings

TS = "2026-11-24T10:00:00.123Z"
MS = parse_ts(TS)


def item(name: str, **fields: Any) -> dict[str, Any]:
    """A well-formed read item with ``fields`` replaced; a field set to ``...`` is dropped."""
    base = {"name": name, "value": 1.5, "quality": 128, "timestamp": TS, "type": "float"}
    base.update(fields)
    return {key: value for key, value in base.items() if value is not ...}


def nested(depth: int) -> list[Any]:
    """A list ``depth`` levels deep, built without recursion."""
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


def test_well_formed_items_become_readings_in_order() -> None:
    answer = {"values": [item("b", value=True), item("a", value="x", quality=0x48), item("c")]}
    result = parse_read_answer(["b", "a", "c"], answer)
    assert result.readings == [
        Reading("b", True, 128, MS),
        Reading("a", "x", 0x48, MS),
        Reading("c", 1.5, 128, MS),
    ]
    assert result.errors == {}


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"value": ...}, "no 'value'"),
        ({"quality": ...}, "no 'quality'"),
        ({"timestamp": ...}, "no 'timestamp'"),
        ({"timestamp": "yesterday"}, "yesterday"),
        ({"timestamp": 1700000000}, "malformed reading"),
        ({"quality": "128"}, "not a whole number"),
        ({"quality": True}, "not a whole number"),
        ({"timestamp": "9999-12-31T23:59:59-14:00"}, "outside the years 1 to 9999"),
        ({"timestamp": "0001-01-01T00:00:00+01:00"}, "outside the years 1 to 9999"),
        ({"value": nested(1000)}, "nested more than 64 levels"),
        ({"value": nested(65)}, "nested more than 64 levels"),
        ({"value": "x" * 70_000}, "more than 65536"),
        ({"value": ["x" * 1000] * 70}, "more than 65536"),
    ],
)
def test_a_malformed_item_is_an_error_of_its_name_only(fields: dict[str, Any], reason: str) -> None:
    answer = {"values": [item("good"), item("bad", **fields), item("also-good")]}
    result = parse_read_answer(["good", "bad", "also-good"], answer)
    assert [r.name for r in result.readings] == ["good", "also-good"]
    assert list(result.errors) == ["bad"]
    assert result.errors["bad"].startswith("malformed reading")
    assert reason in result.errors["bad"]


def test_lists_and_objects_within_the_bounds_are_readings_as_they_come() -> None:
    """Tags of a type the gateway does not know are published as the server gives them."""
    values = [[1, 2], {"v": 1, "w": [True, None]}, nested(64), "y" * 65_536]
    answer = {"values": [item(str(i), value=value) for i, value in enumerate(values)]}
    result = parse_read_answer([str(i) for i in range(len(values))], answer)
    assert result.errors == {}
    assert [reading.value for reading in result.readings] == values


def test_the_dotnet_minimum_date_is_a_reading_of_the_year_1() -> None:
    answer = {"values": [item("old", timestamp="0001-01-01T00:00:00Z")]}
    (reading,) = parse_read_answer(["old"], answer).readings
    assert format_ts(reading.ts_ms) == "0001-01-01T00:00:00.000Z"


def test_error_texts_of_any_shape_are_short_and_never_recurse() -> None:
    answer = {
        "values": [
            {"name": "a", "error": nested(1000)},
            {"name": "b", "error": "e" * 100_000},
            item("c", quality=nested(1000)),
            item("d", timestamp="x" * 100_000),
        ]
    }
    errors = parse_read_answer(["a", "b", "c", "d"], answer).errors
    assert set(errors) == {"a", "b", "c", "d"}
    assert all(len(reason) < 300 for reason in errors.values()), errors


def test_null_value_is_a_reading() -> None:
    result = parse_read_answer(["n"], {"values": [item("n", value=None)]})
    assert result.readings == [Reading("n", None, 128, MS)]


def test_error_items_and_names_the_answer_forgot() -> None:
    answer = {
        "values": [
            {"name": "unknown", "error": "unknown data point"},
            item("ok"),
            "not an object",
            {"value": 1, "quality": 128, "timestamp": TS},  # no name: cannot be attributed
        ]
    }
    result = parse_read_answer(["unknown", "ok", "lost"], answer)
    assert result.readings == [Reading("ok", 1.5, 128, MS)]
    assert result.errors == {
        "unknown": "unknown data point",
        "lost": "missing from the server's answer",
    }


@pytest.mark.parametrize("answer", [{}, {"values": None}, {"values": {"a": 1}}])
def test_an_answer_without_a_values_list_is_a_protocol_error(answer: dict[str, Any]) -> None:
    with pytest.raises(WinCCProtocolError, match="'values' list"):
        parse_read_answer(["a"], answer)


async def test_run_all_raises_the_first_error_with_a_note_of_the_others() -> None:
    async def fail(n: int) -> int:
        raise WinCCRejected(f"failure {n}", status=400)

    async def succeed() -> int:
        await asyncio.sleep(0)
        return 1

    with pytest.raises(WinCCRejected, match="failure 0") as caught:
        await run_all([fail(0), fail(1), succeed()])
    assert caught.value.__notes__ == ["1 concurrent request(s) failed as well"]
    assert await run_all([succeed(), succeed()]) == [1, 1]


# --- a fake server that answers whatever a test wants --------------------------------

Answer = tuple[int, bytes]


@pytest.fixture
async def fake() -> AsyncIterator[tuple[dict[str, Answer], Callable[[], WinCCClient]]]:
    """A plain-HTTP server: login works, every other path answers ``answers[path]``."""
    answers: dict[str, Answer] = {}

    async def login(_: web.Request) -> web.Response:
        return web.json_response({"token": "t0k3n", "expires_in": 3600})

    async def anything(request: web.Request) -> web.Response:
        status, body = answers.get(request.path, (404, b'{"error": "nothing here"}'))
        return web.Response(status=status, body=body, content_type="application/json")

    app = web.Application()
    app.router.add_post("/api/auth/login", login)
    app.router.add_route("*", "/{tail:.*}", anything)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    settings = RestSettings(
        url=f"http://{host}:{port}",
        username="u",
        password=SecretStr("p"),
        allow_insecure_http=True,
    )
    async with open_client(settings) as client:
        yield answers, lambda: client
    await runner.cleanup()


def json_answer(data: object, status: int = 200) -> Answer:
    return status, orjson.dumps(data)


@pytest.mark.parametrize(
    "answer",
    [(200, b"<html>maintenance</html>"), json_answer([1, 2]), json_answer("text")],
    ids=["not JSON", "a list", "a string"],
)
async def test_a_body_that_is_no_json_object_is_a_protocol_error(
    fake: tuple[dict[str, Answer], Callable[[], WinCCClient]], answer: Answer
) -> None:
    answers, client = fake
    answers["/api/dp/read"] = answer
    with pytest.raises(WinCCProtocolError, match="POST /api/dp/read"):
        await client().read_many(["a"])


@pytest.mark.parametrize(
    ("path", "body", "call"),
    [
        ("/api/dp/x", {"name": "x", "value": 1}, lambda c: c.read("x")),
        ("/api/dp/x", {"value": 1, "quality": 128, "timestamp": TS}, lambda c: c.write("x", 1)),
        ("/api/alerts/active", {"alarms": []}, lambda c: c.active_alarms()),
        ("/api/dp/browse", {"children": [{"name": "a", "type": "double"}]}, lambda c: c.browse("")),
        ("/api/dp/browse", {"kids": []}, lambda c: c.browse("")),
    ],
    ids=["read", "write", "alarms", "browse type", "browse"],
)
async def test_wrongly_shaped_answers_are_protocol_errors(
    fake: tuple[dict[str, Answer], Callable[[], WinCCClient]],
    path: str,
    body: object,
    call: Callable[[WinCCClient], Any],
) -> None:
    answers, client = fake
    answers[path] = json_answer(body)
    with pytest.raises(WinCCProtocolError, match="malformed"):
        await call(client())


async def test_alarm_timestamps_and_numeric_ids(
    fake: tuple[dict[str, Answer], Callable[[], WinCCClient]],
) -> None:
    answers, client = fake
    alarm = {
        "id": 7,
        "tag": "T",
        "text": "High",
        "priority": 3,
        "state": "went",
        "acked": False,
        "came_at": TS,
        "went_at": "2026-11-24T10:00:01+00:00",
        "acked_at": None,
    }
    answers["/api/alerts/active"] = json_answer({"alerts": [alarm]})
    [parsed] = await client().active_alarms()
    assert (parsed.id, parsed.came_at, parsed.went_at, parsed.acked_at) == ("7", MS, MS + 877, None)


async def test_a_cursor_that_repeats_is_a_protocol_error(
    fake: tuple[dict[str, Answer], Callable[[], WinCCClient]],
) -> None:
    answers, client = fake
    page = {"name": "x", "values": [item("x")], "next": "same"}
    answers["/api/history/x"] = json_answer(page)
    seen: list[Reading] = []
    with pytest.raises(WinCCProtocolError, match="leads nowhere"):
        async for reading in client().history("x", 0, MS):
            seen.append(reading)  # noqa: PERF401 - keeps the readings before the error
    assert len(seen) == 2  # the first page, then the same cursor again


def alert(alarm_id: object, **fields: Any) -> dict[str, Any]:
    base = {
        "id": alarm_id,
        "tag": "t",
        "text": "x",
        "priority": 1,
        "state": "went",
        "acked": True,
        "came_at": TS,
        "went_at": TS,
        "acked_at": TS,
    }
    base.update(fields)
    return base


def test_an_unreadable_alarm_is_an_error_of_its_id_and_never_means_null() -> None:
    """The .NET minimum date in an optional time is "never"; a time the format cannot
    carry, or any other flaw, makes that alarm an error, not the whole list."""
    answer = {
        "alerts": [
            alert("ok", went_at="0001-01-01T00:00:00Z", acked_at="0001-01-01T00:00:00.0000000"),
            alert("late", came_at="9999-12-31T23:59:59-14:00"),
            alert("state", state="on"),
            alert(nested(1000)),
            nested(1000),
        ]
    }
    alarms = parse_alarms_answer(answer)
    assert [(a.id, a.came_at, a.went_at, a.acked_at) for a in alarms] == [("ok", MS, None, None)]
    assert set(alarms.errors) == {"late", "state", "#3", "#4"}
    assert "outside the years 1 to 9999" in alarms.errors["late"]


def child(name: str, tag_type: object = ..., **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"name": name, "has_children": False, "writable": True}
    if tag_type is not ...:
        base["type"] = tag_type
    return {**base, **fields}


def test_type_names_of_any_server_map_to_tag_types_folders_or_unknown() -> None:
    """Names in any case and dialect of type; folders by name or by having no type; any
    other name is a tag of unknown type, not a failed browse."""
    named = {
        TagType.INT: ["Int16", "INT32", "DINT", "UINT", "int", "Word"],
        TagType.FLOAT: ["REAL", "LREAL", "Double", "Float", "single", "float"],
        TagType.BOOL: ["Boolean", "BOOL", "Bit", "bool"],
        TagType.STRING: ["String", "Text", "WString", "string"],
        TagType.UNKNOWN: ["DateTime", "Matrix", 7, ["x"], nested(1000)],
        None: ["folder", "Struct", "STRUCTURE", "object", "Node", "", None, ...],
    }
    for expected, names in named.items():
        children = [child(f"n{i}", name) for i, name in enumerate(names)]
        infos = parse_browse_answer("GET browse", {"children": children})
        assert [info.type for info in infos] == [expected] * len(names), names


async def test_browse_answers_with_folders_named_as_such_resolve(
    fake: tuple[dict[str, Answer], Callable[[], WinCCClient]],
) -> None:
    answers, client = fake
    answers["/api/dp/browse"] = json_answer(
        {"children": [child("F", "folder", has_children=True), child("T", "REAL")]}
    )
    infos = await client().browse("")
    assert [(info.name, info.type) for info in infos] == [("F", None), ("T", TagType.FLOAT)]


def test_names_not_asked_for_never_hide_one_that_was() -> None:
    """An answer with a name nobody asked for, or one name twice, in place of a requested
    one: that one is missing, not silently dropped."""
    for extra in (item("zzz"), item("b")):
        answer = {"values": [item("b"), extra, item("c")]}
        result = parse_read_answer(["a", "b", "c"], answer)
        assert result.errors == {"a": "missing from the server's answer"}
        assert {reading.name for reading in result.readings} == {"b", "c"}
