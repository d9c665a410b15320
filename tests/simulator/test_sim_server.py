"""The simulator's HTTP API over a real server on a free port."""

from __future__ import annotations

import asyncio
import ssl
import time
from typing import Any

import aiohttp
import pytest
import trustme

from gateway.core.timestamps import format_ts, now_ms, parse_ts
from gateway.simulator import Simulator, SimulatorOptions
from gateway.simulator.server import CATCH_UP_TICKS

LEVEL = "System1.Area1.Tank1.Level"
SETPOINT = "System1.Area1.Tank1.Setpoint"
RUNNING = "System1.Area1.Pump1.Running"
MODE = "System1.Area1.Valve1.Mode"
LOGIN = {"username": "demo", "password": "demo"}


async def call(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> tuple[int, Any]:
    """Status and decoded JSON body; every answer of the simulator is JSON."""
    async with session.request(method, url, headers=headers, **kwargs) as response:
        assert response.content_type == "application/json"
        return response.status, await response.json()


def quiet(sim: Simulator) -> None:
    """No alarm active, whatever the wave did at construction."""
    for alarm_id in sim.plant.alarms:
        sim.plant.clear_alarm(alarm_id, now_ms=now_ms())
    for alarm in sim.plant.active_alarms():
        sim.plant.acknowledge(alarm.id, now_ms=now_ms())


# --- auth ----------------------------------------------------------------------------


async def test_login_gives_a_token(sim: Simulator, session: aiohttp.ClientSession) -> None:
    status, body = await call(session, "POST", f"{sim.url}/api/auth/login", json=LOGIN)
    assert status == 200
    assert isinstance(body["token"], str)
    assert body["expires_in"] == 3600


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        ({"username": "demo", "password": "wrong"}, 401),
        ({"username": "root", "password": "demo"}, 401),
        ({"username": "demo"}, 400),
        ({"username": "demo", "password": 1}, 400),
        ([], 400),
    ],
)
async def test_login_refusals(
    sim: Simulator, session: aiohttp.ClientSession, payload: object, status: int
) -> None:
    got, body = await call(session, "POST", f"{sim.url}/api/auth/login", json=payload)
    assert got == status
    assert "error" in body


@pytest.mark.parametrize(
    "headers",
    [None, {"Authorization": "Bearer nonsense"}, {"Authorization": "Basic ZGVtbzpkZW1v"}],
)
async def test_requests_without_a_valid_token_are_refused(
    sim: Simulator, session: aiohttp.ClientSession, headers: dict[str, str] | None
) -> None:
    async with session.get(f"{sim.url}/api/dp/{LEVEL}", headers=headers) as response:
        assert response.status == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert "error" in await response.json()
    assert sim.reads == 0


async def test_expired_token(sim: Simulator, session: aiohttp.ClientSession) -> None:
    sim.faults.token_ttl = 0.2
    status, body = await call(session, "POST", f"{sim.url}/api/auth/login", json=LOGIN)
    assert body["expires_in"] == 0.2
    headers = {"Authorization": f"Bearer {body['token']}"}
    status, _ = await call(session, "GET", f"{sim.url}/api/dp/{LEVEL}", headers)
    assert status == 200
    await asyncio.sleep(0.25)  # the real clock is what expiry is about
    status, body = await call(session, "GET", f"{sim.url}/api/dp/{LEVEL}", headers)
    assert (status, body) == (401, {"error": "token expired"})


async def test_shortening_the_ttl_expires_existing_tokens(
    sim: Simulator, session: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    status, _ = await call(session, "POST", f"{sim.url}/_sim/faults", json={"token_ttl": 1e-6})
    assert status == 200
    status, body = await call(session, "GET", f"{sim.url}/api/dp/{LEVEL}", auth)
    assert (status, body) == (401, {"error": "token expired"})


async def test_logout_ends_the_token(
    sim: Simulator, session: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    status, _ = await call(session, "POST", f"{sim.url}/api/auth/logout", auth)
    assert status == 200
    status, body = await call(session, "GET", f"{sim.url}/api/dp/{LEVEL}", auth)
    assert (status, body) == (401, {"error": "invalid token"})


# --- reading -------------------------------------------------------------------------


async def test_read_one(
    sim: Simulator, session: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    sim.plant.force(LEVEL, 12.5, now_ms=1_790_000_000_123, quality=0x44)
    status, body = await call(session, "GET", f"{sim.url}/api/dp/{LEVEL}", auth)
    assert status == 200
    assert body == {
        "name": LEVEL,
        "value": 12.5,
        "quality": 0x44,
        "timestamp": format_ts(1_790_000_000_123),
        "type": "float",
    }
    status, body = await call(session, "GET", f"{sim.url}/api/dp/System1.Nope", auth)
    assert status == 404
    assert "unknown data point" in body["error"]


async def test_read_many_with_an_unknown_name(
    sim: Simulator, session: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    names = [LEVEL, "System1.Nope", RUNNING, MODE]
    status, body = await call(
        session, "POST", f"{sim.url}/api/dp/read", auth, json={"names": names}
    )
    assert status == 200
    values = body["values"]
    assert [item["name"] for item in values] == names
    assert values[1] == {"name": "System1.Nope", "error": "unknown data point"}
    assert values[2]["type"] == "bool"
    assert values[2]["value"] is sim.plant.reading(RUNNING).value
    assert values[3]["type"] == "string"
    assert parse_ts(values[0]["timestamp"]) == sim.plant.reading(LEVEL).ts_ms
    assert (sim.reads, sim.read_items) == (1, 4)


async def test_read_many_of_every_tag(
    sim: Simulator, session: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    status, body = await call(
        session, "POST", f"{sim.url}/api/dp/read", auth, json={"names": sim.plant.names}
    )
    assert status == 200
    assert len(body["values"]) == len(sim.plant)
    assert all("error" not in item for item in body["values"])


@pytest.mark.parametrize(
    "data",
    [b"{not json", b'{"names": "System1"}', b'{"names": [1]}', b"[]", b""],
)
async def test_read_many_bad_bodies(
    sim: Simulator, session: aiohttp.ClientSession, auth: dict[str, str], data: bytes
) -> None:
    status, body = await call(session, "POST", f"{sim.url}/api/dp/read", auth, data=data)
    assert status == 400
    assert "error" in body


# --- writing -------------------------------------------------------------------------


async def test_write(sim: Simulator, session: aiohttp.ClientSession, auth: dict[str, str]) -> None:
    status, body = await call(
        session, "PUT", f"{sim.url}/api/dp/{SETPOINT}", auth, json={"value": 50}
    )
    assert status == 200
    assert (body["name"], body["value"], body["quality"], body["type"]) == (
        SETPOINT,
        50.0,
        128,
        "float",
    )
    assert sim.write_log == [(SETPOINT, 50.0)]
    assert sim.plant.reading(SETPOINT).value == 50.0
    status, history = await call(session, "GET", f"{sim.url}/api/history/{SETPOINT}", auth)
    assert [item["value"] for item in history["values"]] == [50.0]
    status, body = await call(
        session, "PUT", f"{sim.url}/api/dp/{MODE}", auth, json={"value": "manual"}
    )
    assert (status, body["value"]) == (200, "manual")
    assert sim.writes == 2


@pytest.mark.parametrize(
    ("name", "payload", "status"),
    [
        ("System1.Nope", {"value": 1}, 404),
        (LEVEL, {"value": 50.0}, 403),
        (SETPOINT, {"value": True}, 400),
        (SETPOINT, {"value": "50"}, 400),
        (RUNNING, {"value": 1}, 400),
        (MODE, {"value": 1}, 400),
        (SETPOINT, {"val": 1}, 400),
        (SETPOINT, [1], 400),
    ],
)
async def test_refused_writes_write_nothing(
    sim: Simulator,
    session: aiohttp.ClientSession,
    auth: dict[str, str],
    *,
    name: str,
    payload: object,
    status: int,
) -> None:
    got, body = await call(session, "PUT", f"{sim.url}/api/dp/{name}", auth, json=payload)
    assert got == status
    assert "error" in body
    assert sim.write_log == []
    assert sim.plant.changes == 0


async def test_malformed_write_body(
    sim: Simulator, session: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    status, body = await call(
        session, "PUT", f"{sim.url}/api/dp/{SETPOINT}", auth, data=b'{"value": '
    )
    assert status == 400
    assert body["error"].startswith("malformed JSON")
    assert sim.write_log == []


# --- alarms --------------------------------------------------------------------------


async def test_alarm_list_and_acknowledge(
    sim: Simulator, session: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    quiet(sim)
    status, body = await call(session, "GET", f"{sim.url}/api/alerts/active", auth)
    assert (status, body) == (200, {"alerts": []})

    sim.plant.raise_alarm("1001", now_ms=1_790_000_000_000)
    status, body = await call(session, "GET", f"{sim.url}/api/alerts/active", auth)
    assert body["alerts"] == [
        {
            "id": "1001",
            "tag": LEVEL,
            "text": "System1.Area1.Tank1: High level",
            "priority": 8,
            "state": "came",
            "acked": False,
            "came_at": format_ts(1_790_000_000_000),
            "went_at": None,
            "acked_at": None,
        }
    ]

    status, body = await call(
        session,
        "POST",
        f"{sim.url}/api/alert/1001/acknowledge",
        auth,
        json={"comment": "seen"},
    )
    assert status == 200
    assert body["acked"] is True
    assert parse_ts(body["acked_at"]) > 1_790_000_000_000
    assert sim.ack_log == [("1001", "seen")]

    sim.plant.clear_alarm("1001", now_ms=now_ms())
    status, body = await call(session, "GET", f"{sim.url}/api/alerts/active", auth)
    assert body == {"alerts": []}


async def test_went_alarm_stays_until_acknowledged_without_a_body(
    sim: Simulator, session: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    quiet(sim)
    sim.plant.raise_alarm("1004", now_ms=now_ms())
    sim.plant.clear_alarm("1004", now_ms=now_ms())
    status, body = await call(session, "GET", f"{sim.url}/api/alerts/active", auth)
    assert [(alarm["id"], alarm["state"]) for alarm in body["alerts"]] == [("1004", "went")]
    status, _ = await call(session, "POST", f"{sim.url}/api/alert/1004/acknowledge", auth)
    assert status == 200
    assert sim.ack_log == [("1004", None)]
    status, body = await call(session, "GET", f"{sim.url}/api/alerts/active", auth)
    assert body == {"alerts": []}


@pytest.mark.parametrize(
    ("alarm_id", "kwargs", "status"),
    [
        ("9999", {}, 404),
        ("1001", {"json": {"comment": 5}}, 400),
        ("1001", {"data": b"{oops"}, 400),
    ],
)
async def test_acknowledge_refusals(
    sim: Simulator,
    session: aiohttp.ClientSession,
    auth: dict[str, str],
    *,
    alarm_id: str,
    kwargs: dict[str, Any],
    status: int,
) -> None:
    sim.plant.raise_alarm("1001", now_ms=now_ms())
    got, body = await call(
        session, "POST", f"{sim.url}/api/alert/{alarm_id}/acknowledge", auth, **kwargs
    )
    assert got == status
    assert "error" in body
    assert sim.ack_log == []


# --- history -------------------------------------------------------------------------


async def test_history_paging(
    sim: Simulator, session: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    t0 = 1_790_000_000_000
    for step in range(25):
        sim.plant.force(SETPOINT, float(step), now_ms=t0 + step * 1000)
    params = {"start": format_ts(t0 + 2000), "end": format_ts(t0 + 21_000), "limit": "8"}
    values: list[float] = []
    pages = 0
    while True:
        status, body = await call(
            session, "GET", f"{sim.url}/api/history/{SETPOINT}", auth, params=params
        )
        assert status == 200
        assert body["name"] == SETPOINT
        assert len(body["values"]) <= 8
        values += [item["value"] for item in body["values"]]
        pages += 1
        if body["next"] is None:
            break
        params["cursor"] = body["next"]
    assert values == [float(step) for step in range(2, 22)]
    assert pages == 3


async def test_history_of_an_unchanged_tag_is_empty(
    sim: Simulator, session: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    status, body = await call(session, "GET", f"{sim.url}/api/history/{LEVEL}", auth)
    assert (status, body) == (200, {"name": LEVEL, "values": [], "next": None})


@pytest.mark.parametrize(
    "params",
    [
        {"start": "yesterday"},
        {"end": "2026-13-01T00:00:00Z"},
        {"start": "2026-11-24T10:00:00Z", "end": "2026-11-24T09:00:00Z"},
        {"limit": "0"},
        {"limit": "ten"},
        {"limit": "100001"},
        {"cursor": "abc"},
        {"cursor": "-1"},
    ],
)
async def test_history_bad_parameters(
    sim: Simulator, session: aiohttp.ClientSession, auth: dict[str, str], params: dict[str, str]
) -> None:
    status, body = await call(
        session, "GET", f"{sim.url}/api/history/{SETPOINT}", auth, params=params
    )
    assert status == 400
    assert "error" in body


async def test_history_unknown_tag(
    sim: Simulator, session: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    status, _ = await call(session, "GET", f"{sim.url}/api/history/System1.Nope", auth)
    assert status == 404


# --- browse --------------------------------------------------------------------------


async def test_browse(sim: Simulator, session: aiohttp.ClientSession, auth: dict[str, str]) -> None:
    status, body = await call(session, "GET", f"{sim.url}/api/dp/browse", auth)
    assert (status, body) == (
        200,
        {
            "path": "",
            "children": [
                {"name": "System1", "type": None, "has_children": True, "writable": False}
            ],
        },
    )
    _, with_dot = await call(
        session, "GET", f"{sim.url}/api/dp/browse", auth, params={"path": "System1."}
    )
    _, without = await call(
        session, "GET", f"{sim.url}/api/dp/browse", auth, params={"path": "System1"}
    )
    assert with_dot["path"] == "System1."
    assert with_dot["children"] == without["children"]
    assert [child["name"] for child in with_dot["children"]] == [
        "System1.Area1",
        "System1.Area2",
        "System1.Area3",
    ]
    _, tank = await call(
        session, "GET", f"{sim.url}/api/dp/browse", auth, params={"path": "System1.Area1.Tank1."}
    )
    assert tank["children"][1] == {
        "name": SETPOINT,
        "type": "float",
        "has_children": False,
        "writable": True,
    }
    status, body = await call(
        session, "GET", f"{sim.url}/api/dp/browse", auth, params={"path": "System9."}
    )
    assert status == 404
    assert "error" in body


# --- faults and stats ----------------------------------------------------------------


async def test_faults_get_and_partial_post(sim: Simulator, session: aiohttp.ClientSession) -> None:
    status, body = await call(session, "GET", f"{sim.url}/_sim/faults")
    assert status == 200
    assert body == {
        "down": False,
        "latency_ms": 0,
        "error_rate": 0.0,
        "drop_rate": 0.0,
        "token_ttl": 3600.0,
        "bad_quality": 0.0,
        "change_rate": 0.0,
        "clock_offset": 0.0,
        "html_login": False,
        "unauthorized": False,
        "redu_state": "ACTIVE",
    }
    status, body = await call(
        session, "POST", f"{sim.url}/_sim/faults", json={"bad_quality": 0.5, "latency_ms": 1}
    )
    assert status == 200
    assert (body["bad_quality"], body["latency_ms"], body["down"]) == (0.5, 1, False)
    assert sim.faults.bad_quality == 0.5


@pytest.mark.parametrize(
    "data",
    [
        b'{"nonsense": 1}',
        b'{"down": "yes"}',
        b'{"latency_ms": 1.5}',
        b'{"error_rate": 2}',
        b'{"token_ttl": 0}',
        b'{"down": true, "bad_quality": -1}',
        b'{"redu_state": "STANDBY"}',
        b"{broken",
        b"[]",
    ],
)
async def test_faults_refusals_change_nothing(
    sim: Simulator, session: aiohttp.ClientSession, data: bytes
) -> None:
    before = sim.faults.model_dump()
    status, body = await call(session, "POST", f"{sim.url}/_sim/faults", data=data)
    assert status == 400
    assert "error" in body
    assert sim.faults.model_dump() == before


async def test_down_answers_503_while_the_plant_runs_on(
    sim: Simulator, session: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    await call(session, "POST", f"{sim.url}/_sim/faults", json={"down": True, "change_rate": 5.0})
    for method, path in (("GET", f"/api/dp/{LEVEL}"), ("POST", "/api/auth/login")):
        status, body = await call(session, method, sim.url + path, auth, json=LOGIN)
        assert status == 503
        assert "error" in body
    deadline = time.monotonic() + 5
    while sim.plant.changes == 0:  # the background ticker is what is under test here
        assert time.monotonic() < deadline, "the plant stopped changing while down"
        await asyncio.sleep(0.02)
    await call(session, "POST", f"{sim.url}/_sim/faults", json={"down": False})
    status, _ = await call(session, "GET", f"{sim.url}/api/dp/{LEVEL}", auth)
    assert status == 200


async def test_latency(
    sim: Simulator, session: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    sim.faults.latency_ms = 150
    started = time.monotonic()
    status, _ = await call(session, "GET", f"{sim.url}/api/dp/{LEVEL}", auth)
    assert status == 200
    assert time.monotonic() - started >= 0.15


async def test_error_rate(
    sim: Simulator, session: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    sim.faults.error_rate = 1.0
    statuses = set()
    for _ in range(20):
        status, body = await call(session, "GET", f"{sim.url}/api/dp/{LEVEL}", auth)
        statuses.add(status)
        assert "error" in body
    assert statuses == {500, 503}
    sim.faults.error_rate = 0.0
    status, _ = await call(session, "GET", f"{sim.url}/api/dp/{LEVEL}", auth)
    assert status == 200


async def test_dropped_connections(
    sim: Simulator, session: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    sim.faults.drop_rate = 1.0
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await call(session, "GET", f"{sim.url}/api/dp/{LEVEL}", auth)
    sim.faults.drop_rate = 0.0
    status, _ = await call(session, "GET", f"{sim.url}/api/dp/{LEVEL}", auth)
    assert status == 200


async def test_stats(sim: Simulator, session: aiohttp.ClientSession, auth: dict[str, str]) -> None:
    quiet(sim)
    transitions = sim.plant.alarm_transitions
    changes = sim.plant.changes
    await call(session, "GET", f"{sim.url}/api/dp/{LEVEL}", auth)
    await call(session, "POST", f"{sim.url}/api/dp/read", auth, json={"names": [LEVEL, MODE]})
    await call(session, "PUT", f"{sim.url}/api/dp/{SETPOINT}", auth, json={"value": 1})
    sim.plant.raise_alarm("1001", now_ms=now_ms())
    await call(session, "POST", f"{sim.url}/api/alert/1001/acknowledge", auth)
    status, body = await call(session, "GET", f"{sim.url}/_sim/stats")
    assert status == 200
    assert body["tags"] == 300
    assert body["changes"] == changes + 2
    assert body["changes_good"] == sim.plant.changes_good
    assert body["alarm_transitions"] == transitions + 2
    assert (body["reads"], body["read_items"], body["writes"], body["acks"]) == (2, 3, 1, 1)
    assert body["uptime_s"] >= 0
    assert body["skipped_s"] == 0


async def test_a_starved_plant_skips_ahead_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    options = SimulatorOptions(port=0, tags=100, alarms=0, change_rate=1.0, tick=0.01, seed=1)
    async with Simulator(options) as simulator:
        # the event loop starved, as when the changes cost more CPU than there is
        time.sleep(0.5)  # noqa: ASYNC251 - blocking the loop is the point
        deadline = time.monotonic() + 5
        while not simulator.plant.skipped_s:
            assert time.monotonic() < deadline, "the plant never skipped ahead"
            await asyncio.sleep(0.01)
        # it made up only CATCH_UP_TICKS ticks of the 0.5 s: about 5 changes, not 50
        assert simulator.plant.changes < 25
        assert simulator.plant.skipped_s >= 0.5 - 0.01 * CATCH_UP_TICKS
        time.sleep(0.2)  # noqa: ASYNC251 - and once more
        deadline = time.monotonic() + 5
        skipped = simulator.plant.skipped_s
        while simulator.plant.skipped_s == skipped:
            assert time.monotonic() < deadline, "the second starvation was not skipped"
            await asyncio.sleep(0.01)
    warnings = [r for r in caplog.records if "falls behind" in r.getMessage()]
    assert len(warnings) == 1  # once, not once per step
    assert "100 tags at 1 changes per tag" in warnings[0].getMessage()


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/api/nothing", 404),
        ("DELETE", f"/api/dp/{LEVEL}", 405),
        ("GET", "/_sim/nothing", 404),
        ("GET", "/", 404),
    ],
)
async def test_unknown_routes_answer_json(
    sim: Simulator,
    session: aiohttp.ClientSession,
    auth: dict[str, str],
    *,
    method: str,
    path: str,
    status: int,
) -> None:
    got, body = await call(session, method, sim.url + path, auth)
    assert got == status
    assert "error" in body


# --- lifecycle and TLS ---------------------------------------------------------------


async def test_the_ticker_changes_the_plant_and_stops_with_the_simulator() -> None:
    options = SimulatorOptions(port=0, tags=100, alarms=2, change_rate=10.0, tick=0.01, seed=1)
    simulator = Simulator(options)
    with pytest.raises(RuntimeError):
        _ = simulator.url
    async with simulator:
        deadline = time.monotonic() + 5
        while simulator.plant.changes == 0:
            assert time.monotonic() < deadline, "no changes from the ticker"
            await asyncio.sleep(0.02)
        assert any(task.get_name() == "simulator-plant" for task in asyncio.all_tasks())
    assert all(task.get_name() != "simulator-plant" for task in asyncio.all_tasks())
    changes = simulator.plant.changes
    await asyncio.sleep(0.05)
    assert simulator.plant.changes == changes
    await simulator.stop()  # twice is harmless


async def test_tls_with_an_injected_context(session: aiohttp.ClientSession) -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    options = SimulatorOptions(port=0, tags=50, alarms=1, change_rate=0.0)
    async with Simulator(options, server_context) as simulator:
        assert simulator.url.startswith("https://127.0.0.1:")
        status, _ = await call(
            session, "POST", f"{simulator.url}/api/auth/login", json=LOGIN, ssl=client_context
        )
        assert status == 200
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await call(session, "POST", f"{simulator.url}/api/auth/login", json=LOGIN)


async def test_tls_with_a_certificate_made_at_start(session: aiohttp.ClientSession) -> None:
    options = SimulatorOptions(port=0, tags=50, alarms=1, change_rate=0.0, tls=True)
    async with Simulator(options) as simulator:
        assert simulator.certificate_pem is not None
        client_context = ssl.create_default_context(
            cadata=simulator.certificate_pem.decode("ascii")
        )
        client_context.verify_flags |= ssl.VERIFY_X509_STRICT
        status, _ = await call(
            session, "POST", f"{simulator.url}/api/auth/login", json=LOGIN, ssl=client_context
        )
        assert status == 200


async def test_clock_offset_shifts_what_is_served_recorded_and_archived(
    session: aiohttp.ClientSession,
) -> None:
    options = SimulatorOptions(port=0, tags=50, alarms=2, change_rate=0.0, clock_offset=3600.0)
    async with Simulator(options) as sim:
        status, body = await call(session, "POST", f"{sim.url}/api/auth/login", json=LOGIN)
        headers = {"Authorization": f"Bearer {body['token']}"}
        url = f"{sim.url}/api/dp/{SETPOINT}"
        status, body = await call(session, "PUT", url, headers, json={"value": 42.0})
        assert status == 200
        assert abs(parse_ts(body["timestamp"]) - (now_ms() + 3_600_000)) < 5_000
        # the archive's default end is the simulated clock, so the write is in it
        status, body = await call(session, "GET", f"{sim.url}/api/history/{SETPOINT}", headers)
        assert [item["value"] for item in body["values"]] == [42.0]
        status, _ = await call(
            session, "POST", f"{sim.url}/_sim/faults", json={"clock_offset": -60.0}
        )
        assert status == 200
        status, body = await call(session, "PUT", url, headers, json={"value": 43.0})
        assert abs(parse_ts(body["timestamp"]) - (now_ms() - 60_000)) < 5_000


async def test_html_login_page_and_unauthorized_faults(
    sim: Simulator, session: aiohttp.ClientSession, auth: dict[str, str]
) -> None:
    await call(session, "POST", f"{sim.url}/_sim/faults", json={"html_login": True})
    for method, path in (("GET", f"/api/dp/{LEVEL}"), ("POST", "/api/auth/login")):
        async with session.request(method, sim.url + path, headers=auth, json=LOGIN) as response:
            assert response.status == 200
            assert response.content_type == "text/html"
            assert "<form" in await response.text()
    sim.faults.apply({"html_login": False, "unauthorized": True})
    for method, path in (("GET", f"/api/dp/{LEVEL}"), ("POST", "/api/auth/login")):
        status, body = await call(session, method, sim.url + path, auth, json=LOGIN)
        assert status == 401
        assert "error" in body
    sim.faults.unauthorized = False
    status, _ = await call(session, "GET", f"{sim.url}/api/dp/{LEVEL}", auth)
    assert status == 200
