"""The ``classic`` client against the classic simulator over verified HTTPS.

The fixtures ``sim``, ``settings`` and ``traced`` of ``tests/wincc/conftest.py`` are
overridden here with their classic counterparts, so ``client`` (built by ``open_client``
from the settings) is a ``ClassicClient``.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import math
from collections.abc import AsyncIterator, Callable
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
from pydantic import SecretStr

from gateway.core.models import TagInfo, TagType
from gateway.core.timestamps import now_ms
from gateway.errors import (
    WinCCAuthError,
    WinCCError,
    WinCCNotFound,
    WinCCProtocolError,
    WinCCRejected,
    WinCCTimeout,
    WinCCUnavailable,
    WinCCUnsupported,
)
from gateway.simulator.classic import ALARM_FILTER, ARCHIVE, BASE_PATH
from gateway.simulator.server import Simulator, SimulatorOptions
from gateway.wincc import classic, http
from gateway.wincc.base import WinCCClient
from gateway.wincc.classic import ClassicClient
from gateway.wincc.connect import build_ssl_context
from gateway.wincc.resolve import resolve_tags
from gateway.wincc.settings import ClassicSettings
from tests.wincc.conftest import ALARMS, PASSWORD, TAGS, USERNAME, Recorder, server_context

LEVEL = "System1.Area1.Tank1.Level"  # float, read-only
SETPOINT = "System1.Area1.Tank1.Setpoint"  # float, writable
MODE = "System1.Area1.Valve1.Mode"  # string, writable
RUNNING = "System1.Area1.Pump1.Running"  # bool, writable
POSITION = "System1.Area1.Valve1.Position"  # int, writable
VALUES = f"{BASE_PATH}/tagManagement/Values"
ClassicFactory = Callable[..., ClassicClient]


@pytest.fixture
async def sim(ca: trustme.CA) -> AsyncIterator[Simulator]:
    """The classic simulator over HTTPS on a free port, its plant frozen."""
    options = SimulatorOptions(
        port=0,
        tags=TAGS,
        alarms=ALARMS,
        username=USERNAME,
        password=PASSWORD,
        change_rate=0.0,
        seed=11,
        dialect="classic",
    )
    async with Simulator(options, ssl_context=server_context(ca)) as simulator:
        yield simulator


@pytest.fixture
def settings(sim: Simulator, ca_file: Path) -> ClassicSettings:
    """Classic settings that reach ``sim`` over verified TLS; the URL names no path."""
    return ClassicSettings(
        url=sim.url,
        dialect="classic",
        username=USERNAME,
        password=SecretStr(PASSWORD),
        ca_file=ca_file,
        timeout=5.0,
        max_concurrency=4,
        batch_size=50,
        alarm_filter=ALARM_FILTER,
    )


@pytest.fixture
async def traced(
    settings: ClassicSettings,
) -> AsyncIterator[tuple[ClassicFactory, Recorder]]:
    """A factory of ``ClassicClient`` on a session the ``Recorder`` watches."""
    recorder = Recorder()
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=build_ssl_context(settings)),
        trace_configs=[recorder.trace_config()],
    ) as session:

        def make(**overrides: Any) -> ClassicClient:
            options: dict[str, Any] = {
                "timeout": settings.timeout,
                "max_concurrency": settings.max_concurrency,
                "batch_size": settings.batch_size,
                "alarm_filter": settings.alarm_filter,
            }
            options.update(overrides)
            password = options.pop("password", settings.password)
            return ClassicClient(
                session, settings.url + BASE_PATH, settings.username, password, **options
            )

        yield make, recorder


def test_the_client_is_classic(client: WinCCClient) -> None:
    assert isinstance(client, ClassicClient)


# --- reads ----------------------------------------------------------------------------


async def test_read_one(client: WinCCClient, sim: Simulator) -> None:
    for name in (LEVEL, MODE, RUNNING, POSITION):
        assert await client.read(name) == sim.plant.reading(name)


async def test_read_unknown_is_an_item_error_or_not_found(
    client: WinCCClient, sim: Simulator
) -> None:
    with pytest.raises(WinCCRejected, match=r"variable not found \(errorcode 1\)") as caught:
        await client.read("System1.Area1.Tank1.Nope")
    assert caught.value.status is None
    sim.classic.variant.empty_for_invalid = True
    with pytest.raises(WinCCNotFound, match="empty body"):
        await client.read("System1.Area1.Tank1.Nope")


@pytest.mark.parametrize("name", ["Values", "a/b", "50% full", "x#y", "../../_sim/stats"])
async def test_odd_names_stay_inside_the_path(client: WinCCClient, name: str) -> None:
    with pytest.raises(WinCCRejected, match="variable not found"):
        await client.read(name)


@pytest.mark.parametrize(
    ("quality_key", "wrapped"),
    [("qualitycode", False), ("qualityCode", False), ("qualitycode", True), ("qualityCode", True)],
)
async def test_read_many_in_every_shape_mixes_readings_and_item_errors(
    client: WinCCClient, sim: Simulator, quality_key: str, wrapped: bool
) -> None:
    sim.classic.variant.quality_key = quality_key
    sim.classic.variant.wrapped = wrapped
    names = [SETPOINT, "Nope.1", LEVEL, RUNNING, "System1.Area9.Tank1.Level"]
    result = await client.read_many(names)
    assert result.readings == [sim.plant.reading(name) for name in (SETPOINT, LEVEL, RUNNING)]
    assert result.errors == {
        "Nope.1": "variable not found (errorcode 1)",
        "System1.Area9.Tank1.Level": "variable not found (errorcode 1)",
    }


async def test_an_empty_answer_is_narrowed_down_to_the_invalid_names(
    traced: tuple[ClassicFactory, Recorder], sim: Simulator
) -> None:
    make, recorder = traced
    sim.classic.variant.empty_for_invalid = True
    valid = sim.plant.names[:64]
    names = [*valid[:20], "Bad.1", *valid[20:], "Bad.2"]
    result = await make(batch_size=66).read_many(names)
    assert [reading.name for reading in result.readings] == valid
    assert set(result.errors) == {"Bad.1", "Bad.2"}
    assert all("empty body" in reason for reason in result.errors.values())
    # halving, not one request per name
    assert len(recorder.paths("POST", VALUES)) <= 1 + 2 * 2 * math.ceil(math.log2(66))


async def test_read_many_chunks_in_input_order_within_the_concurrency_limit(
    traced: tuple[ClassicFactory, Recorder], sim: Simulator
) -> None:
    make, recorder = traced
    client = make(batch_size=7, max_concurrency=2)
    sim.faults.latency_ms = 20
    names = list(reversed(sim.plant.names[:100]))
    result = await client.read_many(names)
    assert [reading.name for reading in result.readings] == names
    assert result.errors == {}
    assert len(recorder.paths("POST", VALUES)) == math.ceil(100 / 7)
    assert recorder.peak == 2


async def test_read_many_of_nothing_sends_nothing(traced: tuple[ClassicFactory, Recorder]) -> None:
    make, recorder = traced
    result = await make().read_many([])
    assert (result.readings, result.errors, recorder.exchanges) == ([], {}, [])


# --- writes ---------------------------------------------------------------------------


async def test_write_returns_the_new_reading(client: WinCCClient, sim: Simulator) -> None:
    reading = await client.write(SETPOINT, 42.5)
    assert (reading.name, reading.value, reading.quality) == (SETPOINT, 42.5, 128)
    assert abs(reading.ts_ms - now_ms()) < 60_000
    assert await client.read(SETPOINT) == reading
    assert (await client.write(MODE, "manual")).value == "manual"
    assert (await client.write(RUNNING, True)).value is True
    assert sim.write_log == [(SETPOINT, 42.5), (MODE, "manual"), (RUNNING, True)]


@pytest.mark.parametrize(
    ("name", "value", "text"),
    [
        (SETPOINT, "fifty", r"type mismatch: .* \(errorcode 2\)"),
        (LEVEL, 50.0, r"read-only \(errorcode 3\)"),
        ("System1.Area1.Tank1.Nope", 1, r"variable not found \(errorcode 1\)"),
    ],
    ids=["type", "read-only", "unknown"],
)
async def test_write_failures_are_item_errors(
    client: WinCCClient, sim: Simulator, name: str, value: object, text: str
) -> None:
    with pytest.raises(WinCCRejected, match=text) as caught:
        await client.write(name, value)  # type: ignore[arg-type]
    assert caught.value.status is None
    assert sim.write_log == []


# --- alarms ---------------------------------------------------------------------------


def _quiet(sim: Simulator) -> None:
    """Every alarm gone and acknowledged, so tests start from an empty message list."""
    plant = sim.plant
    for alarm_id, alarm in plant.alarms.items():
        plant.clear_alarm(alarm_id, now_ms=now_ms())
        if alarm.active:
            plant.acknowledge(alarm_id, now_ms=now_ms())


async def test_alarm_comes_is_acknowledged_in_wincc_and_goes(
    client: WinCCClient, sim: Simulator
) -> None:
    _quiet(sim)
    plant = sim.plant
    alarm_id = next(iter(plant.alarms))
    assert await client.active_alarms() == []

    plant.raise_alarm(alarm_id, now_ms=now_ms())
    [came] = await client.active_alarms()
    assert came == plant.alarms[alarm_id].snapshot()
    assert (came.state, came.acked, came.went_at, came.acked_at) == ("came", False, None, None)

    plant.acknowledge(alarm_id, now_ms=now_ms())  # an operator, in WinCC
    [acked] = await client.active_alarms()
    assert acked == plant.alarms[alarm_id].snapshot()
    assert acked.came_at == came.came_at  # remembered: the list shows only the ack time

    plant.clear_alarm(alarm_id, now_ms=now_ms())
    assert await client.active_alarms() == []


async def test_a_went_alarm_stays_listed_until_acknowledged(
    client: WinCCClient, sim: Simulator
) -> None:
    _quiet(sim)
    plant = sim.plant
    alarm_id = next(iter(plant.alarms))
    plant.raise_alarm(alarm_id, now_ms=now_ms())
    await client.active_alarms()
    plant.clear_alarm(alarm_id, now_ms=now_ms())
    [went] = await client.active_alarms()
    assert went == plant.alarms[alarm_id].snapshot()
    assert (went.state, went.acked) == ("went", False)


async def test_acknowledge_is_refused_with_the_exact_text(
    client: WinCCClient, sim: Simulator
) -> None:
    alarm_id = next(iter(sim.plant.alarms))
    sim.plant.raise_alarm(alarm_id, now_ms=now_ms())
    with pytest.raises(WinCCUnsupported) as caught:
        await client.acknowledge(alarm_id, "checked")
    assert str(caught.value) == "acknowledge is not offered by the classic WinCC REST service"
    assert isinstance(caught.value, WinCCError)
    assert not sim.plant.alarms[alarm_id].acked
    assert sim.ack_log == []


async def test_accept_language_chooses_the_texts(
    traced: tuple[ClassicFactory, Recorder], sim: Simulator
) -> None:
    make, _ = traced
    alarm_id = next(iter(sim.plant.alarms))
    sim.plant.raise_alarm(alarm_id, now_ms=now_ms())
    english = {a.id: a.text for a in await make().active_alarms()}
    german = {a.id: a.text for a in await make(accept_language="de-DE").active_alarms()}
    assert english[alarm_id].endswith(": High level")
    assert german[alarm_id].endswith(": Füllstand hoch")


async def test_an_unknown_filter_is_not_found(traced: tuple[ClassicFactory, Recorder]) -> None:
    make, _ = traced
    with pytest.raises(WinCCNotFound, match="no REST filter 'Nope'"):
        await make(alarm_filter="Nope").active_alarms()


async def test_alarms_without_a_filter_say_what_is_missing(
    traced: tuple[ClassicFactory, Recorder],
) -> None:
    make, recorder = traced
    with pytest.raises(WinCCError, match=r"wincc\.alarm_filter"):
        await make(alarm_filter=None).active_alarms()
    assert recorder.exchanges == []


# --- history --------------------------------------------------------------------------


def _fill(sim: Simulator, name: str, count: int, step: int = 1000) -> int:
    start = now_ms() - 1_000_000
    for i in range(count):
        sim.plant.force(name, float(i), now_ms=start + i * step)
    return start


async def test_history_pages_by_time(
    traced: tuple[ClassicFactory, Recorder], sim: Simulator
) -> None:
    make, recorder = traced
    start = _fill(sim, SETPOINT, 35)
    client = make(history_page=10)
    readings = [r async for r in client.history(SETPOINT, start, start + 34_000)]
    assert [r.value for r in readings] == [float(i) for i in range(35)]
    assert [r.ts_ms for r in readings] == [start + i * 1000 for i in range(35)]
    assert {r.name for r in readings} == {SETPOINT}
    # 10 + 9 + 9 + 7 new values, then a page with nothing new ends the paging
    assert len(recorder.paths("POST", f"{BASE_PATH}/tagLogging/Values")) == 5
    assert len(recorder.paths("GET", f"{BASE_PATH}/tagLogging/Variables")) == 1

    window = [r.value async for r in client.history(SETPOINT, start + 5000, start + 14_000)]
    assert window == [float(i) for i in range(5, 15)]


async def test_history_pages_past_values_that_share_a_time(
    traced: tuple[ClassicFactory, Recorder], sim: Simulator
) -> None:
    make, _ = traced
    start = now_ms() - 1_000_000
    for i in range(25):  # five values at each of five times
        sim.plant.force(SETPOINT, float(i), now_ms=start + (i // 5) * 1000)
    readings = [r async for r in make(history_page=7).history(SETPOINT, start, start + 10_000)]
    assert [r.value for r in readings] == [float(i) for i in range(25)]


async def test_history_uses_the_default_archive_when_the_server_lists_none(
    traced: tuple[ClassicFactory, Recorder], sim: Simulator
) -> None:
    make, _ = traced
    start = _fill(sim, SETPOINT, 3)
    sim.classic.variant.archive_list = False
    values = [r.value async for r in make(archive=ARCHIVE).history(SETPOINT, start, now_ms())]
    assert values == [0.0, 1.0, 2.0]
    with pytest.raises(WinCCNotFound, match=r"wincc\.archive is not set"):
        [r async for r in make().history(SETPOINT, start, now_ms())]
    with pytest.raises(WinCCRejected, match=r"unknown archive Other \(errorcode 4\)"):
        [r async for r in make(archive="Other").history(SETPOINT, start, now_ms())]


async def test_history_of_unknown_tag(client: WinCCClient) -> None:
    with pytest.raises(WinCCNotFound):
        [r async for r in client.history("Nope", 0, now_ms())]


# --- browse ---------------------------------------------------------------------------


async def test_browse_levels(client: WinCCClient) -> None:
    assert await client.browse("") == [TagInfo("System1", None, has_children=True, writable=False)]
    areas = await client.browse("System1")
    assert [area.name for area in areas] == ["System1.Area1", "System1.Area2", "System1.Area3"]
    tank = [
        TagInfo("System1.Area1.Tank1.Level", TagType.FLOAT, has_children=False, writable=True),
        TagInfo("System1.Area1.Tank1.Setpoint", TagType.FLOAT, has_children=False, writable=True),
        TagInfo(
            "System1.Area1.Tank1.Temperature", TagType.FLOAT, has_children=False, writable=True
        ),
    ]
    assert await client.browse("System1.Area1.Tank1") == tank
    assert await client.browse("System1.Area1.Tank1.") == tank
    types = {info.name: info.type for info in await client.browse("System1.Area1.Valve1")}
    assert types == {
        MODE: TagType.STRING,
        POSITION: TagType.INT,
        "System1.Area1.Valve1.Open": TagType.BOOL,
    }


async def test_browse_unknown_folder(client: WinCCClient) -> None:
    with pytest.raises(WinCCNotFound):
        await client.browse("System1.Area42")


@pytest.mark.parametrize(
    "pattern", ["System1.Area1.Tank*.Level", "System1.*.Pump1.*", "**.Setpoint", "System1.Area2.**"]
)
async def test_globs_resolve_as_on_the_rest_dialect(
    traced: tuple[ClassicFactory, Recorder],
    sim: Simulator,
    pattern: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    make, recorder = traced
    monkeypatch.setattr(classic, "CONFIG_PAGE", 64)  # so the tag list comes in pages
    result = await resolve_tags(make(), [pattern])
    expected = [name for name in sim.plant.names if _glob(pattern, name)]
    assert [tag.name for tag in result.tags] == sorted(expected)
    pages = recorder.paths("GET", f"{BASE_PATH}/tagManagement/variables")
    assert len(pages) == math.ceil(TAGS / 64)  # once for the whole walk, page by page
    assert [page.query.get("continuationPoint") for page in pages][:2] == [None, "64"]
    assert {page.query["itemLimit"] for page in pages} == {"64"}


def _glob(pattern: str, name: str) -> bool:
    if pattern.startswith("**."):
        return name.endswith(pattern[2:])
    if pattern.endswith(".**"):
        return name.startswith(pattern[:-2])
    return len(pattern.split(".")) == len(name.split(".")) and fnmatchcase(name, pattern)


# --- authentication and faults --------------------------------------------------------


async def test_wrong_password_is_an_auth_error_naming_the_user(
    traced: tuple[ClassicFactory, Recorder],
) -> None:
    make, recorder = traced
    with pytest.raises(WinCCAuthError, match="refused the user 'gateway' \\(401\\)") as caught:
        await make(password=SecretStr("Wr0ng-horse")).read(LEVEL)
    assert caught.value.status == 401
    assert "Wr0ng-horse" not in str(caught.value)
    assert len(recorder.exchanges) == 1  # no retry: the same credentials would fail again


async def test_outage_is_unavailable_and_passes(client: WinCCClient, sim: Simulator) -> None:
    sim.faults.down = True
    with pytest.raises(WinCCUnavailable, match="simulated outage") as caught:
        await client.read_many([LEVEL])
    assert caught.value.status == 503
    sim.faults.down = False
    assert (await client.read(LEVEL)).name == LEVEL


async def test_server_errors_are_unavailable(client: WinCCClient, sim: Simulator) -> None:
    sim.faults.error_rate = 1.0
    with pytest.raises(WinCCUnavailable) as caught:
        await client.active_alarms()
    assert caught.value.status in (500, 503)


async def test_slow_server_is_a_timeout(
    traced: tuple[ClassicFactory, Recorder], sim: Simulator
) -> None:
    make, _ = traced
    client = make(timeout=0.1)
    sim.faults.latency_ms = 400
    with pytest.raises(WinCCTimeout, match=r"no answer within 0\.1 s"):
        await client.read(LEVEL)
    sim.faults.latency_ms = 0
    assert (await client.read(LEVEL)).name == LEVEL


async def test_dropped_connection_is_unavailable(client: WinCCClient, sim: Simulator) -> None:
    sim.faults.drop_rate = 1.0
    with pytest.raises(WinCCUnavailable) as caught:
        await client.read_many([LEVEL, SETPOINT])
    assert isinstance(caught.value.__cause__, aiohttp.ClientError)


async def test_close_sends_nothing(traced: tuple[ClassicFactory, Recorder]) -> None:
    make, recorder = traced
    client = make()
    await client.read(LEVEL)
    await client.close()
    assert len(recorder.exchanges) == 1
    assert (await client.read(LEVEL)).name == LEVEL


# --- what the log says ----------------------------------------------------------------


async def test_the_shape_of_each_kind_of_answer_is_logged_once_without_values(
    client: WinCCClient, sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.wincc.classic")
    sim.plant.force(SETPOINT, 12345.678, now_ms=now_ms())
    for _ in range(3):
        await client.read_many([SETPOINT, LEVEL])
    await client.read(SETPOINT)
    shapes = [r.getMessage() for r in caplog.records if "answers" in r.getMessage()]
    assert len(shapes) == 2
    bulk = next(line for line in shapes if "POST tagManagement/Values" in line)
    assert "[2 x {" in bulk
    for key in ("variableName", "dataType", "value", "timestamp", "qualitycode", "errorcode"):
        assert f"{key}: " in bulk
    assert "12345" not in " ".join(shapes)
    assert SETPOINT not in " ".join(shapes)


async def test_no_secret_in_any_error_or_log_line(
    traced: tuple[ClassicFactory, Recorder], sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    make, _ = traced
    client = make(timeout=0.1)
    errors: list[BaseException] = []

    async def collect(call: Any) -> None:
        try:
            await call
        except WinCCError as exc:
            errors.append(exc)

    await client.read(LEVEL)
    await collect(client.write(LEVEL, 1.0))
    await collect(client.write(SETPOINT, "x"))
    await collect(client.read("nope"))
    await collect(client.acknowledge("1001"))
    await collect(make(password=SecretStr(PASSWORD + "-wrong")).read(LEVEL))
    sim.faults.down = True
    await collect(client.read(LEVEL))
    sim.faults.down = False
    sim.faults.latency_ms = 400
    await collect(client.read(LEVEL))
    sim.faults.latency_ms = 0
    await asyncio.sleep(0)

    assert len(errors) == 7
    basic = base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
    texts = [record.getMessage() for record in caplog.records]
    for error in errors:
        chained: BaseException | None = error
        while chained is not None:
            texts += [str(chained), repr(chained), *getattr(chained, "__notes__", [])]
            chained = chained.__cause__ or chained.__context__
    for secret in (PASSWORD, basic):
        assert not [text for text in texts if secret in text]


async def test_an_answer_larger_than_the_limit_is_a_protocol_error(
    client: WinCCClient, sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The classic client reads answers under the same limit as the rest one."""
    monkeypatch.setattr(http, "MAX_ANSWER_BYTES", 2000)
    assert await client.read(LEVEL) == sim.plant.reading(LEVEL)
    with pytest.raises(WinCCProtocolError, match="more than 2000"):
        await client.read_many(sim.plant.names[:50])
