"""The simulator's WinCC Unified dialect: GraphQL over HTTP(S) and graphql-transport-ws."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import ssl
from collections.abc import AsyncIterator
from inspect import isawaitable
from typing import Any

import aiohttp
import orjson
import pytest
from graphql import execute, get_operation_ast, parse

from gateway.core.timestamps import format_ts, parse_ts
from gateway.simulator.cli import _options, configure_parser
from gateway.simulator.plant import UnknownAlarmError
from gateway.simulator.server import Simulator, SimulatorOptions
from gateway.simulator.unified_projection import projection
from gateway.simulator.unified_schema import quality_fields
from gateway.wincc import unified_queries as q

LEVEL = "System1.Area1.Tank1.Level"  # float, read-only
SETPOINT = "System1.Area1.Tank1.Setpoint"  # float, writable
RUNNING = "System1.Area1.Pump1.Running"  # bool, writable
PROTOCOL = "graphql-transport-ws"
LOGIN = 'mutation { login(username: "demo", password: "demo") { token expires error { code } } }'
READ = "query($n: [String!]!) { tagValues(names: $n) { name value { value timestamp quality { quality subStatus limit } } error { code description } } }"  # noqa: E501
SUBSCRIBE_TAGS = "subscription($n: [String!]!) { tagValues(names: $n) { name value { value } error { code } notificationReason } }"  # noqa: E501
SUBSCRIBE_ALARMS = "subscription { activeAlarms { name instanceID state notificationReason } }"


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    """A frozen plant (change_rate 0) without active alarms: tests change it directly."""
    options = SimulatorOptions(
        port=0, tags=300, alarms=8, change_rate=0.0, seed=3, tick=0.01, dialect="unified"
    )
    async with Simulator(options) as simulator:
        for alarm_id in simulator.plant.alarms:
            simulator.plant.clear_alarm(alarm_id, now_ms=simulator.now())
            with contextlib.suppress(UnknownAlarmError):  # unless it was active
                simulator.plant.acknowledge(alarm_id, now_ms=simulator.now())
        assert simulator.plant.active_alarms() == []
        yield simulator


async def gql(
    sim: Simulator,
    session: aiohttp.ClientSession,
    query: str,
    variables: dict[str, Any] | None = None,
    token: str | None = None,
    **kwargs: Any,
) -> tuple[int, Any]:
    """HTTP status and JSON answer of one GraphQL POST."""
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    body = {"query": query, "variables": variables}
    async with session.post(f"{sim.url}/graphql/", json=body, headers=headers, **kwargs) as r:
        return r.status, await r.json()


@pytest.fixture
async def token(sim: Simulator, session: aiohttp.ClientSession) -> str:
    status, body = await gql(sim, session, LOGIN)
    assert status == 200
    value = body["data"]["login"]["token"]
    assert isinstance(value, str)
    return value


async def receive(ws: aiohttp.ClientWebSocketResponse) -> Any:
    """The next protocol message, decoded."""
    async with asyncio.timeout(10):
        return await ws.receive_json()


async def closed_with(ws: aiohttp.ClientWebSocketResponse) -> tuple[int, str]:
    """The close code and reason the server ends the socket with."""
    async with asyncio.timeout(10):
        message = await ws.receive()
    assert message.type is aiohttp.WSMsgType.CLOSE, message
    return message.data, message.extra


async def connect(
    sim: Simulator, session: aiohttp.ClientSession, token: str, **kwargs: Any
) -> aiohttp.ClientWebSocketResponse:
    """An initialised socket: connection_init with the token, connection_ack seen."""
    ws = await session.ws_connect(f"{sim.url}/graphql/", protocols=(PROTOCOL,), **kwargs)
    assert ws.protocol == PROTOCOL
    await ws.send_json({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}})
    assert await receive(ws) == {"type": "connection_ack"}
    return ws


def subscribe(query: str, subscription_id: str = "1", **variables: Any) -> dict[str, Any]:
    payload = {"query": query, "variables": variables}
    return {"id": subscription_id, "type": "subscribe", "payload": payload}


# --- sessions -------------------------------------------------------------------------


async def test_login_and_wrong_credentials(sim: Simulator, session: aiohttp.ClientSession) -> None:
    query = "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token expires user { name autoLogoffSec } error { code description } } }"  # noqa: E501
    status, body = await gql(sim, session, query, {"u": "demo", "p": "demo"})
    assert status == 200
    login = body["data"]["login"]
    assert login["error"]["code"] == "0"
    assert login["token"] in sim.unified.sessions
    assert login["user"] == {"name": "demo", "autoLogoffSec": 300}
    assert login["expires"].endswith("Z")
    assert parse_ts(login["expires"]) - sim.now() == pytest.approx(300_000, abs=2000)
    for user, password in (("demo", "wrong"), ("nobody", "demo")):
        status, body = await gql(sim, session, query, {"u": user, "p": password})
        assert status == 200
        assert body["data"]["login"]["token"] is None
        assert body["data"]["login"]["error"]["code"] == "101"
    assert len(sim.unified.sessions) == 1


async def test_every_other_operation_needs_a_session(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    for token in (None, "not-a-token"):
        status, body = await gql(sim, session, READ, {"n": [LEVEL]}, token)
        assert status == 200
        assert body["data"] is None
        assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        assert "log in" in body["errors"][0]["message"]
    assert sim.reads == 0


async def test_sessions_end_after_inactivity_unless_extended(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    now = [1000.0]
    sim.unified.clock = lambda: now[0]
    _, body = await gql(sim, session, LOGIN)
    token = body["data"]["login"]["token"]
    extend = "mutation { extendSession { token error { code } } }"
    now[0] += 200
    status, body = await gql(sim, session, extend, token=token)
    assert body["data"]["extendSession"] == {"token": token, "error": {"code": "0"}}
    now[0] += 250  # 450 s after login, 250 s after the extension: still alive
    status, body = await gql(sim, session, READ, {"n": [LEVEL]}, token)
    assert body["data"]["tagValues"][0]["name"] == LEVEL
    now[0] += 300  # a full window without a request
    status, body = await gql(sim, session, READ, {"n": [LEVEL]}, token)
    assert status == 200
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert token not in sim.unified.sessions


async def test_logout_ends_the_session(
    sim: Simulator, session: aiohttp.ClientSession, token: str
) -> None:
    status, body = await gql(sim, session, "mutation { logout }", token=token)
    assert status == 200
    assert body == {"data": {"logout": True}}
    _, body = await gql(sim, session, READ, {"n": [LEVEL]}, token)
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


# --- queries and mutations ------------------------------------------------------------


async def test_tag_values_with_qualities_and_an_unknown_name(
    sim: Simulator, session: aiohttp.ClientSession, token: str
) -> None:
    level = sim.plant.force(LEVEL, 12.5, now_ms=sim.now(), quality=0x55)
    sim.plant.force(SETPOINT, 40.0, now_ms=sim.now(), quality=192)
    status, body = await gql(sim, session, READ, {"n": [LEVEL, "System1.Nope", SETPOINT]}, token)
    assert status == 200
    first, unknown, setpoint = body["data"]["tagValues"]
    assert first == {
        "name": LEVEL,
        "value": {
            "value": 12.5,
            "timestamp": format_ts(level.ts_ms),
            "quality": {
                "quality": "UNCERTAIN",
                "subStatus": "RANGE_VIOLATION",
                "limit": "LOW_LIMIT_VIOLATION",
            },
        },
        "error": {"code": "0", "description": ""},
    }
    assert unknown["value"] is None
    assert unknown["error"]["code"] == "2"
    assert setpoint["value"]["quality"]["quality"] == "GOOD_CASCADE"
    assert (sim.reads, sim.read_items) == (1, 3)


def test_quality_byte_mapping() -> None:
    assert quality_fields(128)["quality"] == "GOOD_NON_CASCADE"
    bad = quality_fields(0x1E)  # BAD, out of service, high limit
    assert (bad["quality"], bad["subStatus"], bad["limit"]) == (
        "BAD",
        "OUT_OF_SERVICE",
        "HIGH_LIMIT_VIOLATION",
    )
    assert quality_fields(0xC3)["limit"] == "CONSTANT"
    assert quality_fields(0xFC)["subStatus"] is None  # no name for that sub-status


async def test_write_then_read_back(
    sim: Simulator, session: aiohttp.ClientSession, token: str
) -> None:
    query = "mutation($in: [TagValueInput]!) { writeTagValues(input: $in) { name error { code description } } }"  # noqa: E501
    items = [
        {"name": SETPOINT, "value": 42.5},
        {"name": RUNNING, "value": True},
        {"name": SETPOINT, "value": "high"},
        {"name": "System1.Nope", "value": 1},
        {"name": LEVEL, "value": 1.0},
    ]
    status, body = await gql(sim, session, query, {"in": items}, token)
    assert status == 200
    codes = [result["error"]["code"] for result in body["data"]["writeTagValues"]]
    assert codes == ["0", "0", "201", "2", "203"]
    assert sim.write_log == [(SETPOINT, 42.5), (RUNNING, True)]
    _, body = await gql(sim, session, READ, {"n": [SETPOINT, RUNNING]}, token)
    assert [r["value"]["value"] for r in body["data"]["tagValues"]] == [42.5, True]


async def test_browse_with_globs(
    sim: Simulator, session: aiohttp.ClientSession, token: str
) -> None:
    query = "query($f: [String], $t: [ObjectTypesEnum]) { browse(nameFilters: $f, objectTypeFilters: $t) { name displayName objectType dataType } }"  # noqa: E501
    _, body = await gql(sim, session, query, {"f": ["System1.Area1.Tank1.*"], "t": ["TAG"]}, token)
    assert body["data"]["browse"] == [
        {"name": LEVEL, "displayName": "Level", "objectType": "TAG", "dataType": "LReal"},
        {"name": SETPOINT, "displayName": "Setpoint", "objectType": "TAG", "dataType": "LReal"},
        {
            "name": "System1.Area1.Tank1.Temperature",
            "displayName": "Temperature",
            "objectType": "TAG",
            "dataType": "LReal",
        },
    ]
    variables = {"f": ["System1.Area1.Pump?.Running"], "t": None}
    _, body = await gql(sim, session, query, variables, token)
    names = [item["name"] for item in body["data"]["browse"]]
    assert RUNNING in names
    assert all(name.endswith(".Running") for name in names)
    assert len(names) == 9  # Pump1..Pump9: Pump10 has two characters after "Pump"
    _, body = await gql(sim, session, query, {"f": [], "t": ["ALARM"]}, token)
    alarms = body["data"]["browse"]
    assert len(alarms) == len(sim.plant.alarms)
    assert alarms[0]["name"] == f"System1::{LEVEL}:HighLevel"


async def test_logged_tag_values(
    sim: Simulator, session: aiohttp.ClientSession, token: str
) -> None:
    first = sim.plant.write(SETPOINT, 10.0, now_ms=sim.now() - 2000)
    second = sim.plant.write(SETPOINT, 20.0, now_ms=sim.now() - 1000)
    query = "query($n: [String]!, $s: Timestamp, $m: Int, $o: LoggedTagValuesSortingModeEnum) { loggedTagValues(names: $n, startTime: $s, maxNumberOfValues: $m, sortingMode: $o) { loggingTagName error { code } values { value { value timestamp quality { quality } } } } }"  # noqa: E501
    names = [f"{SETPOINT}:Log", f"{SETPOINT}:Other", "System1.Nope:Log"]
    _, body = await gql(sim, session, query, {"n": names, "s": format_ts(first.ts_ms)}, token)
    logged, other, unknown = body["data"]["loggedTagValues"]
    assert logged["error"]["code"] == "0"
    assert [v["value"]["value"] for v in logged["values"]] == [10.0, 20.0]
    assert logged["values"][1]["value"]["timestamp"] == format_ts(second.ts_ms)
    assert logged["values"][0]["value"]["quality"] == {"quality": "GOOD_NON_CASCADE"}
    assert other["error"]["code"] == unknown["error"]["code"] == "2"
    variables = {"n": names[:1], "m": 1, "o": "TIME_DESC"}
    _, body = await gql(sim, session, query, variables, token)
    assert [v["value"]["value"] for v in body["data"]["loggedTagValues"][0]["values"]] == [20.0]


async def test_active_alarms_and_acknowledge(
    sim: Simulator, session: aiohttp.ClientSession, token: str
) -> None:
    alarm_id = next(iter(sim.plant.alarms))
    name = sim.unified.data.alarm_name(alarm_id)
    sim.plant.raise_alarm(alarm_id, now_ms=sim.now())
    alarms = "{ activeAlarms { name instanceID state priority eventText raiseTime clearTime } }"
    _, body = await gql(sim, session, alarms, token=token)
    (alarm,) = body["data"]["activeAlarms"]
    assert alarm["name"] == name
    assert alarm["instanceID"] == int(alarm_id)
    assert alarm["state"] == "RAISED"
    assert alarm["clearTime"] == "1970-01-01T00:00:00.000Z"
    assert "High level" in alarm["eventText"][0]
    ack = "mutation($in: [AlarmIdentifierInput]!) { acknowledgeAlarms(input: $in) { alarmName alarmInstanceID error { code } } }"  # noqa: E501
    variables = {"in": [{"name": name}, {"name": "System1::Nope:Alarm"}]}
    _, body = await gql(sim, session, ack, variables, token)
    done, unknown = body["data"]["acknowledgeAlarms"]
    assert done == {"alarmName": name, "alarmInstanceID": int(alarm_id), "error": {"code": "0"}}
    assert unknown["error"]["code"] == "2"
    assert sim.ack_log == [(alarm_id, None)]
    _, body = await gql(sim, session, alarms, token=token)
    assert body["data"]["activeAlarms"][0]["state"] == "RAISED_ACKNOWLEDGED"


async def test_invalid_documents_are_refused_unexecuted(
    sim: Simulator, session: aiohttp.ClientSession, token: str
) -> None:
    for query, problem in (
        ("{ tagValues(names: []) { name bogus } }", "Cannot query field 'bogus'"),
        ("{ tagValues(names: 5) { name } }", "String"),
        ("{ tagValues(names: []) { name ", "Syntax Error"),
        ("{ nothing }", "Cannot query field 'nothing'"),
    ):
        status, body = await gql(sim, session, query, token=token)
        assert status == 400
        assert "data" not in body
        assert problem in body["errors"][0]["message"]
    assert sim.reads == 0


# --- the HTTP transport ---------------------------------------------------------------


async def test_content_type_size_and_body_checks(
    sim: Simulator, session: aiohttp.ClientSession, token: str
) -> None:
    url = f"{sim.url}/graphql/"
    headers = {"Authorization": f"Bearer {token}"}
    query = '{ tagValues(names: ["x"]) { name } }'
    for content_type in ("text/plain", "application/x-www-form-urlencoded"):
        send = {**headers, "Content-Type": content_type}
        async with session.post(url, data=query, headers=send) as response:
            assert response.status == 415
            assert "application/json" in (await response.json())["errors"][0]["message"]
    big = orjson.dumps({"query": query, "variables": {"pad": "x" * (1024 * 1024)}})
    send = {**headers, "Content-Type": "application/json"}
    async with session.post(url, data=io.BytesIO(big), headers=send) as response:
        assert response.status == 413
    for raw in (b"{not json", b"[]", b'{"query": 5}'):
        async with session.post(url, data=raw, headers=send) as response:
            assert response.status == 400
    assert sim.reads == 0


async def test_the_path_without_its_slash_redirects(
    sim: Simulator, session: aiohttp.ClientSession
) -> None:
    url = f"{sim.url}/graphql"
    async with session.get(url, allow_redirects=False) as response:
        assert response.status == 301
        assert response.headers["Location"] == "/graphql/"
    async with session.post(url, json={"query": LOGIN}, allow_redirects=False) as response:
        assert response.status == 308
        assert response.headers["Location"] == "/graphql/"
    assert sim.unified.sessions == {}


async def test_faults_apply_to_the_endpoint(
    sim: Simulator, session: aiohttp.ClientSession, token: str
) -> None:
    ws = await connect(sim, session, token)
    async with session.post(f"{sim.url}/_sim/faults", json={"down": True}) as response:
        assert response.status == 200
    async with asyncio.timeout(10):
        assert (await ws.receive()).type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
    status, _ = await gql(sim, session, READ, {"n": [LEVEL]}, token)
    assert status == 503
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await session.ws_connect(f"{sim.url}/graphql/", protocols=(PROTOCOL,))
    assert refused.value.status == 503
    sim.faults.down = False
    sim.faults.error_rate = 1.0
    assert (await gql(sim, session, READ, {"n": [LEVEL]}, token))[0] in (500, 503)
    sim.faults.error_rate = 0.0
    assert (await gql(sim, session, READ, {"n": [LEVEL]}, token))[0] == 200


# --- the WebSocket --------------------------------------------------------------------


async def test_subscription_pushes_changes_until_completed(
    sim: Simulator, session: aiohttp.ClientSession, token: str
) -> None:
    ws = await connect(sim, session, token)
    await ws.send_json(subscribe(SUBSCRIBE_TAGS, n=[SETPOINT, "System1.Nope"]))
    first, unknown = await receive(ws), await receive(ws)
    setpoint = sim.plant.reading(SETPOINT).value
    assert first == {
        "id": "1",
        "type": "next",
        "payload": {
            "data": {
                "tagValues": {
                    "name": SETPOINT,
                    "value": {"value": setpoint},
                    "error": {"code": "0"},
                    "notificationReason": "Added",
                }
            }
        },
    }
    assert unknown["payload"]["data"]["tagValues"]["error"] == {"code": "2"}
    sim.plant.write(SETPOINT, 33.0, now_ms=sim.now())
    sim.plant.write(SETPOINT, 34.0, now_ms=sim.now())
    for value in (33.0, 34.0):  # one next per change, none merged
        change = (await receive(ws))["payload"]["data"]["tagValues"]
        assert change["value"] == {"value": value}
        assert change["notificationReason"] == "Modified"
    await ws.send_json({"id": "1", "type": "complete"})
    await ws.send_json({"type": "ping"})
    assert await receive(ws) == {"type": "pong"}
    sim.plant.write(SETPOINT, 35.0, now_ms=sim.now())
    await ws.send_json({"type": "ping", "payload": {"n": 1}})
    assert await receive(ws) == {"type": "pong", "payload": {"n": 1}}  # no next came first
    assert sim.unified.data.streams == 0
    await ws.send_json(subscribe(SUBSCRIBE_TAGS, "2", n=[SETPOINT]))
    await receive(ws)
    assert sim.unified.data.streams == 1
    (connection,) = sim.unified.connections
    await ws.close()  # the client goes: its subscriptions end with it
    async with asyncio.timeout(10):
        await connection.ended.wait()
    assert sim.unified.data.streams == 0


async def test_subscription_document_errors_and_single_results(
    sim: Simulator, session: aiohttp.ClientSession, token: str
) -> None:
    ws = await connect(sim, session, token)
    await ws.send_json(subscribe("subscription { tagValues(names: []) { bogus } }", "a"))
    error = await receive(ws)
    assert (error["id"], error["type"]) == ("a", "error")
    assert "bogus" in error["payload"][0]["message"]
    await ws.send_json(subscribe(READ, "b", n=[LEVEL]))
    result = await receive(ws)
    assert result["type"] == "next"
    assert result["payload"]["data"]["tagValues"][0]["name"] == LEVEL
    assert await receive(ws) == {"id": "b", "type": "complete"}
    await ws.close()


async def test_alarm_subscription_sees_alarms_come_change_and_go(
    sim: Simulator, session: aiohttp.ClientSession, token: str
) -> None:
    alarms = sim.plant.alarms
    first = next(iter(alarms))
    second = next(a for a in alarms if alarms[a].tag != alarms[first].tag)  # its own tag
    data = sim.unified.data
    sim.plant.raise_alarm(first, now_ms=sim.now())
    ws = await connect(sim, session, token)
    await ws.send_json(subscribe(SUBSCRIBE_ALARMS))

    async def notification() -> tuple[str, str, str]:
        alarm = (await receive(ws))["payload"]["data"]["activeAlarms"]
        return alarm["name"], alarm["state"], alarm["notificationReason"]

    assert await notification() == (data.alarm_name(first), "RAISED", "Added")
    sim.plant.raise_alarm(second, now_ms=sim.now())
    assert await notification() == (data.alarm_name(second), "RAISED", "Added")
    sim.plant.clear_alarm(first, now_ms=sim.now())
    assert await notification() == (data.alarm_name(first), "RAISED_CLEARED", "Modified")
    sim.plant.acknowledge(first, now_ms=sim.now() + 1)
    expected = (data.alarm_name(first), "RAISED_CLEARED_ACKNOWLEDGED", "Removed")
    assert await notification() == expected
    sim.plant.acknowledge(second, now_ms=sim.now())
    assert await notification() == (data.alarm_name(second), "RAISED_ACKNOWLEDGED", "Modified")
    sim.plant.clear_alarm(second, now_ms=sim.now() + 1)
    expected = (data.alarm_name(second), "RAISED_ACKNOWLEDGED_CLEARED", "Removed")
    assert await notification() == expected
    await ws.close()


async def test_protocol_violations_close_with_their_codes(
    sim: Simulator, session: aiohttp.ClientSession, token: str
) -> None:
    url = f"{sim.url}/graphql/"
    ws = await session.ws_connect(url, protocols=(PROTOCOL,))
    await ws.send_json(subscribe(SUBSCRIBE_TAGS, n=[LEVEL]))
    assert (await closed_with(ws))[0] == 4401  # subscribe before connection_ack
    ws = await session.ws_connect(url, protocols=(PROTOCOL,))
    await ws.send_json({"type": "connection_init", "payload": {"Authorization": "Bearer bad"}})
    assert (await closed_with(ws))[0] == 4403
    ws = await session.ws_connect(url, protocols=("graphql-ws",))
    assert (await closed_with(ws))[0] == 4406
    ws = await connect(sim, session, token)
    await ws.send_json({"type": "connection_init"})
    assert (await closed_with(ws))[0] == 4429
    ws = await connect(sim, session, token)
    await ws.send_str("{not json")
    assert (await closed_with(ws))[0] == 4400
    ws = await connect(sim, session, token)
    await ws.send_json(subscribe(SUBSCRIBE_TAGS, "x", n=[LEVEL]))
    await receive(ws)
    await ws.send_json(subscribe(SUBSCRIBE_TAGS, "x", n=[LEVEL]))
    code, reason = await closed_with(ws)
    assert code == 4409
    assert "x" in reason
    sim.unified.init_timeout = 0.05
    ws = await session.ws_connect(url, protocols=(PROTOCOL,))
    assert (await closed_with(ws))[0] == 4408  # no connection_init in time


async def test_the_token_may_come_with_the_upgrade_request(
    sim: Simulator, session: aiohttp.ClientSession, token: str
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    ws = await session.ws_connect(f"{sim.url}/graphql/", protocols=(PROTOCOL,), headers=headers)
    await ws.send_json({"type": "connection_init"})
    assert await receive(ws) == {"type": "connection_ack"}
    await ws.close()


async def test_ended_sessions_close_their_sockets(
    sim: Simulator, session: aiohttp.ClientSession, token: str
) -> None:
    ws = await connect(sim, session, token)
    async with session.post(f"{sim.url}/_sim/expire-sessions") as response:
        assert await response.json() == {"expired": 1}
    assert (await closed_with(ws))[0] == 4401
    _, body = await gql(sim, session, READ, {"n": [LEVEL]}, token)
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    # inactivity: the plant's next tick finds the session's window passed
    now = [0.0]
    sim.unified.clock = lambda: now[0]
    _, body = await gql(sim, session, LOGIN)
    ws = await connect(sim, session, body["data"]["login"]["token"])
    now[0] += 301
    assert (await closed_with(ws))[0] == 4401
    assert sim.unified.sessions == {}


async def test_dropped_sockets(sim: Simulator, session: aiohttp.ClientSession, token: str) -> None:
    ws = await connect(sim, session, token)
    async with session.post(f"{sim.url}/_sim/drop-websockets") as response:
        assert await response.json() == {"dropped": 1}
    async with asyncio.timeout(10):
        assert (await ws.receive()).type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
    assert token in sim.unified.sessions  # the session outlives its socket


async def test_over_tls(session: aiohttp.ClientSession) -> None:
    options = SimulatorOptions(
        port=0, tags=50, alarms=2, change_rate=0.0, tick=0.01, dialect="unified", tls=True
    )
    async with Simulator(options) as sim:
        assert sim.url.startswith("https://")
        assert sim.certificate_pem is not None
        context = ssl.create_default_context(cadata=sim.certificate_pem.decode())
        _, body = await gql(sim, session, LOGIN, ssl=context)
        token = body["data"]["login"]["token"]
        ws = await connect(sim, session, token, ssl=context)
        await ws.send_json(subscribe(SUBSCRIBE_TAGS, n=[LEVEL]))
        assert (await receive(ws))["payload"]["data"]["tagValues"]["name"] == LEVEL
        sim.plant.force(LEVEL, 1.5, now_ms=sim.now())
        assert (await receive(ws))["payload"]["data"]["tagValues"]["value"] == {"value": 1.5}
        await ws.close()


# --- the command line -----------------------------------------------------------------


def test_dialect_flags() -> None:
    parser = argparse.ArgumentParser(prog="wincc-gateway simulate")
    configure_parser(parser)
    argv = ["--dialect", "unified", "--graphql-path", "/api/graphql", "--auto-logoff", "60"]
    options = _options(parser.parse_args(argv))
    assert not isinstance(options, str)
    assert (options.dialect, options.graphql_path, options.auto_logoff) == (
        "unified",
        "/api/graphql",
        60.0,
    )
    assert "graphql-transport-ws" in parser.format_help()
    with pytest.raises(SystemExit):
        parser.parse_args(["--graphql-path", "graphql"])


@pytest.mark.parametrize(
    "document",
    [
        q.SUBSCRIBE_TAG_VALUES,
        q.SUBSCRIBE_ALARMS,
        "subscription S($names: [String!]!) { v: tagValues(names: $names) { who: name"
        " value { value timestamp quality { quality subStatus limit } } error { code } } }",
        SUBSCRIBE_ALARMS,
    ],
)
async def test_subscription_results_are_the_executors_without_running_it(
    sim: Simulator, document: str
) -> None:
    """Picking the selected fields out of each event gives what executing the document
    gives, aliases and nesting included; only plain fields are picked."""
    parsed = parse(document)
    operation = get_operation_ast(parsed)
    assert operation is not None
    project = projection(operation)
    assert project is not None
    alarm = next(iter(sim.plant.alarms.values()))
    if "activeAlarms" in document:
        events = [{**sim.unified.data.alarm_fields(alarm), "notificationReason": "Removed"}]
    else:
        events = [
            {**sim.unified.data.tag_result(LEVEL), "notificationReason": "Modified"},
            {**sim.unified.data.tag_result("no.such.tag"), "notificationReason": "Added"},
        ]
    for event in events:
        executed = execute(sim.unified.schema, parsed, event, variable_values={"names": [LEVEL]})
        assert not isawaitable(executed)
        assert executed.errors is None
        assert project(event) == executed.data
    fragment = parse("subscription { tagValues(names: []) { ...F } } fragment F on X { name }")
    fragment_operation = get_operation_ast(fragment)
    assert fragment_operation is not None
    assert projection(fragment_operation) is None
