"""The simulator's classic WinCC REST service: routes, Basic auth, variants, faults, CLI."""

from __future__ import annotations

import argparse
import asyncio
import base64
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from gateway.core.timestamps import format_ts, now_ms, parse_ts
from gateway.simulator.classic import ALARM_FILTER, ARCHIVE, BASE_PATH
from gateway.simulator.cli import _options, configure_parser
from gateway.simulator.server import Simulator, SimulatorOptions

LEVEL = "System1.Area1.Tank1.Level"  # float, read-only
SETPOINT = "System1.Area1.Tank1.Setpoint"  # float, writable
RUNNING = "System1.Area1.Pump1.Running"  # bool, writable


def basic(user: str, password: str) -> str:
    """An Authorization value for HTTP Basic auth."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


AUTH = basic("demo", "demo")


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    options = SimulatorOptions(
        port=0, tags=300, alarms=8, change_rate=0.0, seed=3, tick=0.01, dialect="classic"
    )
    async with Simulator(options) as simulator:
        yield simulator


async def call(
    sim: Simulator,
    session: aiohttp.ClientSession,
    method: str,
    path: str,
    *,
    auth: str | None = AUTH,
    **kwargs: Any,
) -> tuple[int, Any]:
    """Status and decoded JSON (None for an empty body) of one request under the base path."""
    url = sim.url + (path if path.startswith("/") else f"{BASE_PATH}/{path}")
    headers = kwargs.pop("headers", {})
    if auth is not None:
        headers["Authorization"] = auth
    async with session.request(method, url, headers=headers, **kwargs) as response:
        body = await response.read()
        return response.status, (await response.json() if body else None)


# --- authentication and routing -------------------------------------------------------


async def test_every_request_needs_basic_auth(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    for auth in (None, basic("demo", "wrong"), basic("x", "demo")):
        status, body = await call(sim, session, "GET", f"tagManagement/Value/{LEVEL}", auth=auth)
        assert status == 401
        assert "error" in body
    url = f"{sim.url}{BASE_PATH}/tagManagement/Value/{LEVEL}"
    async with session.get(url, headers={"Authorization": "Basic !!!"}) as response:
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith("Basic")
    async with session.get(url, headers={"Authorization": "Bearer abc"}) as response:
        assert response.status == 401
    assert sim.reads == 0


@pytest.mark.parametrize(
    "path",
    [
        f"{BASE_PATH}/tagManagement/Value/{LEVEL}",
        f"{BASE_PATH}/TagManagement/Value/{LEVEL}",
        f"/winccrestservice/TAGMANAGEMENT/value/{LEVEL}",
    ],
)
async def test_paths_ignore_case(sim: Simulator, session: aiohttp.ClientSession, path: str) -> None:
    status, body = await call(sim, session, "GET", path)
    assert status == 200
    assert body["variableName"] == LEVEL


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "tagManagement/Values", 405),
        ("DELETE", f"tagManagement/Value/{LEVEL}", 405),
        ("GET", "tagManagement/Nothing", 404),
        ("GET", "tagManagement/Value", 404),
        ("GET", f"tagManagement/Value/{LEVEL}/more", 404),
        ("GET", "alarmLogging/ShortTermArchive/x", 404),
        ("GET", f"/api/dp/{LEVEL}", 404),  # the rest API is not served beside it
        ("GET", "/Other/tagManagement/Values", 404),
    ],
)
async def test_unknown_routes_answer_json(
    sim: Simulator, session: aiohttp.ClientSession, method: str, path: str, status: int
) -> None:
    got, body = await call(sim, session, method, path)
    assert got == status
    assert isinstance(body["error"], str)


async def test_the_rest_dialect_does_not_serve_classic_paths(
    session: aiohttp.ClientSession,
) -> None:
    async with Simulator(SimulatorOptions(port=0, tags=20, alarms=0, change_rate=0.0)) as rest:
        status, _ = await call(rest, session, "POST", "tagManagement/Values", json={})
        assert status == 404


# --- tag management -------------------------------------------------------------------


async def test_read_many_items(sim: Simulator, session: aiohttp.ClientSession) -> None:
    body = {"variableNames": [LEVEL, "Nope", RUNNING]}
    status, items = await call(sim, session, "POST", "tagManagement/Values", json=body)
    assert status == 200
    level = sim.plant.reading(LEVEL)
    assert items[0] == {
        "variableName": LEVEL,
        "dataType": 9,
        "value": level.value,
        "timestamp": format_ts(level.ts_ms),
        "qualitycode": 128,
        "errorcode": 0,
        "error": "",
    }
    assert (items[1]["errorcode"], items[1]["error"]) == (1, "variable not found")
    assert (items[2]["dataType"], type(items[2]["value"])) == (1, bool)
    assert (sim.reads, sim.read_items) == (1, 3)


async def test_variants(sim: Simulator, session: aiohttp.ClientSession) -> None:
    variant = sim.classic.variant
    variant.quality_key, variant.wrapped = "qualityCode", True
    body = {"variableNames": [LEVEL]}
    _, answer = await call(sim, session, "POST", "tagManagement/Values", json=body)
    assert list(answer) == ["values"]
    assert answer["values"][0]["qualityCode"] == 128
    assert "qualitycode" not in answer["values"][0]

    variant.empty_for_invalid = True
    assert (await call(sim, session, "POST", "tagManagement/Values", json=body))[1] is not None
    body = {"variableNames": [LEVEL, "Nope"]}
    assert await call(sim, session, "POST", "tagManagement/Values", json=body) == (200, None)
    assert await call(sim, session, "GET", "tagManagement/Value/Nope") == (200, None)
    assert await call(sim, session, "PUT", "tagManagement/Value/Nope", json={"value": 1}) == (
        200,
        None,
    )


@pytest.mark.parametrize(
    "body", [{"names": [LEVEL]}, {"variableNames": LEVEL}, {"variableNames": [1]}, [LEVEL]]
)
async def test_read_many_bad_bodies(
    sim: Simulator, session: aiohttp.ClientSession, body: object
) -> None:
    status, answer = await call(sim, session, "POST", "tagManagement/Values", json=body)
    assert status == 400
    assert "variableNames" in answer["error"]


async def test_writes_answer_the_new_item_or_an_item_error(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    path = f"tagManagement/Value/{SETPOINT}"
    status, item = await call(sim, session, "PUT", path, json={"value": 42})
    assert status == 200
    assert (item["value"], item["errorcode"], item["error"]) == (42.0, 0, "")
    assert sim.plant.reading(SETPOINT).value == 42.0
    refusals = [
        (SETPOINT, {"value": "x"}, 2),
        (LEVEL, {"value": 1.0}, 3),
        ("Nope", {"value": 1.0}, 1),
    ]
    for name, body, code in refusals:
        status, item = await call(sim, session, "PUT", f"tagManagement/Value/{name}", json=body)
        assert (status, item["errorcode"], item["variableName"]) == (200, code, name)
        assert item["error"]
    for body in ({"val": 1}, [1]):
        status, _ = await call(sim, session, "PUT", path, json=body)
        assert status == 400
    status, _ = await call(sim, session, "PUT", path, data=b"{")
    assert status == 400
    assert sim.write_log == [(SETPOINT, 42.0)]
    assert sim.writes == 1


async def test_variables_page_by_offset(sim: Simulator, session: aiohttp.ClientSession) -> None:
    names: list[str] = []
    point: object = None
    pages = 0
    while True:
        params = {"itemLimit": "128"} | ({} if point is None else {"continuationPoint": point})
        status, page = await call(sim, session, "GET", "tagManagement/variables", params=params)
        assert status == 200
        names += [item["name"] for item in page["variables"]]
        pages += 1
        point = page["continuationPoint"]
        if point is None:
            break
        point = str(point)
    assert names == sim.plant.names
    assert pages == 3
    _, page = await call(sim, session, "GET", "tagManagement/variables")
    assert len(page["variables"]) == 300
    assert page["continuationPoint"] is None
    assert {item["dataType"] for item in page["variables"]} == {1, 6, 9, 11}
    for bad in ({"itemLimit": "0"}, {"itemLimit": "x"}, {"continuationPoint": "-1"}):
        status, _ = await call(sim, session, "GET", "tagManagement/variables", params=bad)
        assert status == 400


# --- tag logging ----------------------------------------------------------------------


async def test_archived_variables_and_their_values(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    _, listed = await call(sim, session, "GET", "tagLogging/Variables", params={"itemLimit": "2"})
    assert listed == {
        "variables": [{"name": name, "archiveName": ARCHIVE} for name in sim.plant.names[:2]],
        "continuationPoint": 2,
    }
    start = now_ms() - 100_000
    for i in range(5):
        sim.plant.force(SETPOINT, float(i), now_ms=start + i * 1000)
    variables = [
        {"name": SETPOINT, "timeFrom": format_ts(start + 1000), "timeTo": format_ts(start + 3000)},
        {"name": SETPOINT, "timeFrom": format_ts(start), "maxValues": 2},
        {"name": "Nope"},
    ]
    body = {
        "archives": [
            {"name": ARCHIVE, "variables": variables},
            {"name": "X", "variables": [{"name": SETPOINT}]},
        ]
    }
    status, answer = await call(sim, session, "POST", "tagLogging/Values", json=body)
    assert status == 200
    window, limited, unknown = answer[0]["variables"]
    assert [v["value"] for v in window["values"]] == [1.0, 2.0, 3.0]
    assert parse_ts(window["values"][0]["timestamp"]) == start + 1000
    assert window["values"][0]["qualitycode"] == 128
    assert [v["value"] for v in limited["values"]] == [0.0, 1.0]
    assert (unknown["errorcode"], unknown["values"]) == (1, [])
    other = answer[1]
    assert other["name"] == "X"
    assert other["variables"][0]["error"] == "unknown archive X"


@pytest.mark.parametrize(
    "body",
    [
        {"archives": {}},
        {"archives": [{"name": ARCHIVE}]},
        {"archives": [{"name": ARCHIVE, "variables": [{"timeFrom": "x"}]}]},
        {"archives": [{"name": ARCHIVE, "variables": [{"name": SETPOINT, "timeFrom": "soon"}]}]},
        {"archives": [{"name": ARCHIVE, "variables": [{"name": SETPOINT, "maxValues": 0}]}]},
    ],
)
async def test_history_bad_bodies(
    sim: Simulator, session: aiohttp.ClientSession, body: object
) -> None:
    status, _ = await call(sim, session, "POST", "tagLogging/Values", json=body)
    assert status == 400


async def test_without_the_archive_list(sim: Simulator, session: aiohttp.ClientSession) -> None:
    sim.classic.variant.archive_list = False
    status, _ = await call(sim, session, "GET", "tagLogging/Variables")
    assert status == 404


# --- alarm logging --------------------------------------------------------------------


async def test_message_list_follows_the_alarm_through_its_states(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    plant = sim.plant
    for alarm_id, alarm in plant.alarms.items():
        plant.clear_alarm(alarm_id, now_ms=now_ms())
        if alarm.active:
            plant.acknowledge(alarm_id, now_ms=now_ms())
    path = f"alarmLogging/MessageList/{ALARM_FILTER}"
    assert await call(sim, session, "GET", path) == (200, [])
    alarm_id = next(iter(plant.alarms))
    alarm = plant.alarms[alarm_id]

    def expect(state: int, at: int | None) -> dict[str, object]:
        return {
            "messageNumber": int(alarm_id),
            "state": state,
            "timestamp": None if at is None else format_ts(at),
            "text1": alarm.text,
            "priority": alarm.point.priority,
            "alarmTag": alarm.tag,
            "className": "Alarm",
        }

    plant.raise_alarm(alarm_id, now_ms=now_ms())
    assert (await call(sim, session, "GET", path))[1] == [expect(1, alarm.came_at)]
    plant.clear_alarm(alarm_id, now_ms=now_ms())
    assert (await call(sim, session, "GET", path))[1] == [expect(2, alarm.went_at)]
    plant.raise_alarm(alarm_id, now_ms=now_ms())
    plant.acknowledge(alarm_id, now_ms=now_ms())
    assert (await call(sim, session, "GET", path))[1] == [expect(3, alarm.acked_at)]
    german = {"Accept-Language": "de-DE,de;q=0.9"}
    _, messages = await call(sim, session, "GET", path, headers=german)
    assert messages[0]["text1"].endswith(": Füllstand hoch")
    sim.classic.variant.wrapped = True
    assert list((await call(sim, session, "GET", path))[1]) == ["values"]


async def test_unknown_filter(sim: Simulator, session: aiohttp.ClientSession) -> None:
    status, body = await call(sim, session, "GET", "alarmLogging/MessageList/Other")
    assert status == 404
    assert "Other" in body["error"]


# --- faults ---------------------------------------------------------------------------


async def test_faults_apply_to_the_classic_routes(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    path = f"tagManagement/Value/{LEVEL}"
    sim.faults.down = True
    assert (await call(sim, session, "GET", path))[0] == 503
    assert (await call(sim, session, "GET", path, auth=None))[0] == 503  # before auth, as rest
    assert (await call(sim, session, "GET", "/_sim/stats", auth=None))[0] == 200
    sim.faults.down = False
    sim.faults.error_rate = 1.0
    assert (await call(sim, session, "GET", path))[0] in (500, 503)
    sim.faults.error_rate = 0.0
    sim.faults.latency_ms = 150
    started = time.monotonic()
    assert (await call(sim, session, "GET", path))[0] == 200
    assert time.monotonic() - started >= 0.15
    sim.faults.latency_ms = 0
    sim.faults.drop_rate = 1.0
    with pytest.raises(aiohttp.ClientError):
        await call(sim, session, "GET", path)
    await asyncio.sleep(0)


# --- the command line -----------------------------------------------------------------


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="wincc-gateway simulate")
    configure_parser(parser)
    return parser.parse_args(argv)


def test_dialect_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse().dialect == "rest"
    options = _options(parse("--dialect", "classic"))
    assert not isinstance(options, str)
    assert options.dialect == "classic"
    with pytest.raises(SystemExit) as exit_info:
        parse("--dialect", "opcua")
    assert exit_info.value.code == 2
    assert "--dialect" in capsys.readouterr().err
    parser = argparse.ArgumentParser(prog="wincc-gateway simulate")
    configure_parser(parser)
    assert "alarmLogging/MessageList/GatewayAlarms" in parser.format_help()
