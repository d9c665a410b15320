"""The ``rest`` client against the simulator over verified HTTPS: every endpoint and fault."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable

import aiohttp
import pytest
from aiohttp import web
from pydantic import SecretStr

from gateway.core.models import TagInfo, TagType, Value
from gateway.core.timestamps import now_ms
from gateway.errors import (
    WinCCAuthError,
    WinCCError,
    WinCCNotFound,
    WinCCProtocolError,
    WinCCRejected,
    WinCCTimeout,
    WinCCUnavailable,
)
from gateway.simulator.server import Simulator
from gateway.wincc import http
from gateway.wincc.base import WinCCClient
from tests.wincc.conftest import PASSWORD, Exchange, Recorder, TracedFactory

LEVEL = "System1.Area1.Tank1.Level"  # float, read-only
SETPOINT = "System1.Area1.Tank1.Setpoint"  # float, writable
MODE = "System1.Area1.Valve1.Mode"  # string, writable


def _restore_ttl_on_401(sim: Simulator) -> Callable[[Exchange], None]:
    """After the first 401 the server accepts fresh tokens again (the old one stays dead)."""

    def hook(exchange: Exchange) -> None:
        if exchange.status == 401:
            sim.faults.token_ttl = 3600.0

    return hook


# --- reads ----------------------------------------------------------------------------


async def test_read_one(client: WinCCClient, sim: Simulator) -> None:
    assert await client.read(LEVEL) == sim.plant.reading(LEVEL)


async def test_read_unknown_is_not_found(client: WinCCClient) -> None:
    with pytest.raises(WinCCNotFound, match="unknown data point") as caught:
        await client.read("System1.Area1.Tank1.Nope")
    assert caught.value.status == 404


@pytest.mark.parametrize("name", ["browse?path=", "a/b", "50% full", "x#y", "../../_sim/stats"])
async def test_odd_names_stay_inside_the_path(client: WinCCClient, name: str) -> None:
    # unescaped, "browse?path=" would hit the browse route and "a/b" another path
    with pytest.raises(WinCCNotFound):
        await client.read(name)


async def test_read_many_mixes_readings_and_per_item_errors(
    client: WinCCClient, sim: Simulator
) -> None:
    names = [SETPOINT, "Nope.1", LEVEL, "System1.Area9.Tank1.Level"]
    result = await client.read_many(names)
    assert result.readings == [sim.plant.reading(SETPOINT), sim.plant.reading(LEVEL)]
    assert result.errors == {
        "Nope.1": "unknown data point",
        "System1.Area9.Tank1.Level": "unknown data point",
    }


async def test_reading_again_hands_out_the_same_reading_for_what_did_not_change(
    client: WinCCClient, sim: Simulator
) -> None:
    """Poll after poll, an unchanged tag's item is recognised in the answer's bytes and
    its reading handed out again (the change detector skips it by identity); a written
    one is read anew."""
    names = sim.plant.names[:40]
    assert SETPOINT in names
    first = await client.read_many(names)
    await client.write(SETPOINT, 42.5)
    second = await client.read_many(names)
    assert second.readings == [sim.plant.reading(name) for name in names]
    for before, after in zip(first.readings, second.readings, strict=True):
        assert (after is before) == (after.name != SETPOINT), after.name


async def test_read_many_chunks_in_input_order_within_the_concurrency_limit(
    traced: tuple[TracedFactory, Recorder], sim: Simulator
) -> None:
    make, recorder = traced
    client = make(batch_size=7, max_concurrency=2)
    await client.read(LEVEL)  # log in before the latency makes requests overlap
    sim.faults.latency_ms = 20
    names = list(reversed(sim.plant.names[:100]))
    result = await client.read_many(names)
    assert [reading.name for reading in result.readings] == names
    assert result.errors == {}
    assert len(recorder.paths("POST", "/api/dp/read")) == math.ceil(100 / 7)
    assert recorder.peak == 2


async def test_semaphore_bounds_every_kind_of_request(
    traced: tuple[TracedFactory, Recorder], sim: Simulator
) -> None:
    make, recorder = traced
    client = make(max_concurrency=3)
    await client.read(LEVEL)
    sim.faults.latency_ms = 20
    async with asyncio.TaskGroup() as group:
        for _ in range(4):
            group.create_task(client.read(LEVEL))
            group.create_task(client.browse("System1"))
            group.create_task(client.active_alarms())
    assert recorder.peak == 3


async def test_read_many_of_nothing_sends_nothing(traced: tuple[TracedFactory, Recorder]) -> None:
    make, recorder = traced
    result = await make().read_many([])
    assert (result.readings, result.errors, recorder.exchanges) == ([], {}, [])


# --- writes ---------------------------------------------------------------------------


async def test_write_returns_the_new_reading(client: WinCCClient, sim: Simulator) -> None:
    reading = await client.write(SETPOINT, 42.5)
    assert (reading.name, reading.value, reading.quality) == (SETPOINT, 42.5, 128)
    assert abs(reading.ts_ms - now_ms()) < 60_000
    assert sim.write_log == [(SETPOINT, 42.5)]
    assert await client.read(SETPOINT) == reading
    assert (await client.write(MODE, "manual")).value == "manual"


WRITE_REFUSALS = [
    (SETPOINT, "fifty", WinCCRejected, 400, "type mismatch"),
    (LEVEL, 50.0, WinCCRejected, 403, "read-only"),
    ("System1.Area1.Tank1.Nope", 1, WinCCNotFound, 404, "unknown data point"),
]


@pytest.mark.parametrize("case", WRITE_REFUSALS, ids=["400", "403", "404"])
async def test_write_refusals(
    client: WinCCClient, sim: Simulator, case: tuple[str, Value, type[WinCCError], int, str]
) -> None:
    name, value, error, status, text = case
    with pytest.raises(error, match=text) as caught:
        await client.write(name, value)
    assert caught.value.status == status
    assert sim.write_log == []


# --- alarms ---------------------------------------------------------------------------


async def test_alarm_comes_is_acknowledged_and_goes(client: WinCCClient, sim: Simulator) -> None:
    plant = sim.plant
    alarm_id = next(a for a in plant.alarms.values() if not a.active).id
    plant.raise_alarm(alarm_id, now_ms=now_ms())
    alarms = {alarm.id: alarm for alarm in await client.active_alarms()}
    assert alarms[alarm_id] == plant.alarms[alarm_id].snapshot()
    assert alarms[alarm_id].state == "came"
    assert isinstance(alarms[alarm_id].came_at, int)
    assert alarms[alarm_id].acked_at is None

    await client.acknowledge(alarm_id, "checked on site")
    assert sim.ack_log == [(alarm_id, "checked on site")]
    acked = {alarm.id: alarm for alarm in await client.active_alarms()}[alarm_id]
    assert acked.acked
    assert isinstance(acked.acked_at, int)

    plant.clear_alarm(alarm_id, now_ms=now_ms())
    assert alarm_id not in {alarm.id for alarm in await client.active_alarms()}


async def test_acknowledge_without_comment(client: WinCCClient, sim: Simulator) -> None:
    alarm_id = next(iter(sim.plant.alarms))
    sim.plant.raise_alarm(alarm_id, now_ms=now_ms())
    await client.acknowledge(alarm_id)
    assert sim.ack_log == [(alarm_id, None)]


async def test_acknowledge_unknown_alarm(client: WinCCClient) -> None:
    with pytest.raises(WinCCNotFound, match="no active alarm"):
        await client.acknowledge("no/such?alarm")


# --- history --------------------------------------------------------------------------


async def test_history_follows_the_cursor_across_pages(
    traced: tuple[TracedFactory, Recorder], sim: Simulator
) -> None:
    make, recorder = traced
    client = make(history_page=10)
    start = now_ms() - 100_000
    for i in range(35):
        sim.plant.force(SETPOINT, float(i), now_ms=start + i * 1000)
    readings = [r async for r in client.history(SETPOINT, start, start + 34_000)]
    assert [r.value for r in readings] == [float(i) for i in range(35)]
    assert [r.ts_ms for r in readings] == [start + i * 1000 for i in range(35)]
    assert {r.name for r in readings} == {SETPOINT}
    pages = recorder.paths("GET", f"/api/history/{SETPOINT}")
    assert len(pages) == 4
    assert "cursor" not in pages[0].query
    assert all(page.query["limit"] == "10" for page in pages)

    window = [r.value async for r in client.history(SETPOINT, start + 5000, start + 14_000)]
    assert window == [float(i) for i in range(5, 15)]


async def test_history_of_unknown_tag(client: WinCCClient) -> None:
    with pytest.raises(WinCCNotFound):
        [r async for r in client.history("Nope", 0, now_ms())]


# --- browse ---------------------------------------------------------------------------


async def test_browse_levels(client: WinCCClient) -> None:
    assert await client.browse("") == [TagInfo("System1", None, has_children=True, writable=False)]
    areas = await client.browse("System1")
    assert [area.name for area in areas] == ["System1.Area1", "System1.Area2", "System1.Area3"]
    tank = [
        TagInfo("System1.Area1.Tank1.Level", TagType.FLOAT, has_children=False, writable=False),
        TagInfo("System1.Area1.Tank1.Setpoint", TagType.FLOAT, has_children=False, writable=True),
        TagInfo(
            "System1.Area1.Tank1.Temperature", TagType.FLOAT, has_children=False, writable=False
        ),
    ]
    assert await client.browse("System1.Area1.Tank1") == tank
    assert await client.browse("System1.Area1.Tank1.") == tank


async def test_browse_unknown_folder(client: WinCCClient) -> None:
    with pytest.raises(WinCCNotFound):
        await client.browse("System1.Area42")


# --- authentication -------------------------------------------------------------------


async def test_concurrent_first_requests_share_one_login(
    traced: tuple[TracedFactory, Recorder],
) -> None:
    make, recorder = traced
    client = make()
    async with asyncio.TaskGroup() as group:
        for _ in range(20):
            group.create_task(client.read(LEVEL))
    assert recorder.logins == 1


async def test_expired_token_logs_in_again_once(
    traced: tuple[TracedFactory, Recorder], sim: Simulator
) -> None:
    make, recorder = traced
    client = make()
    await client.read(LEVEL)
    sim.faults.token_ttl = 1e-6  # expires the token the client holds
    recorder.on_response = _restore_ttl_on_401(sim)
    assert (await client.read(LEVEL)).name == LEVEL
    assert recorder.logins == 2
    assert [e.status for e in recorder.paths("GET", f"/api/dp/{LEVEL}")] == [200, 401, 200]
    assert len(recorder.tokens()) == 2


async def test_many_requests_meeting_an_expired_token_share_one_login(
    traced: tuple[TracedFactory, Recorder], sim: Simulator
) -> None:
    make, recorder = traced
    client = make(max_concurrency=8)
    await client.read(LEVEL)
    sim.faults.token_ttl = 1e-6
    recorder.on_response = _restore_ttl_on_401(sim)
    async with asyncio.TaskGroup() as group:
        reads = [group.create_task(client.read(LEVEL)) for _ in range(30)]
        bulk = [group.create_task(client.read_many([SETPOINT, LEVEL])) for _ in range(10)]
    assert {task.result().name for task in reads} == {LEVEL}
    assert all(len(task.result().readings) == 2 for task in bulk)
    refused = [e for e in recorder.exchanges if e.status == 401]
    assert len(refused) >= 8  # a whole wave of requests met the dead token
    assert recorder.logins == 2


async def test_a_second_401_is_an_auth_error_not_a_loop(
    traced: tuple[TracedFactory, Recorder], sim: Simulator
) -> None:
    make, recorder = traced
    sim.faults.token_ttl = 1e-6  # every token is dead on arrival
    with pytest.raises(WinCCAuthError, match="right after logging in again") as caught:
        await make().read(LEVEL)
    assert caught.value.status == 401
    assert recorder.logins == 2
    assert len(recorder.paths("GET", f"/api/dp/{LEVEL}")) == 2


async def test_wrong_password_is_an_auth_error_tried_once(
    traced: tuple[TracedFactory, Recorder],
) -> None:
    make, recorder = traced
    wrong = "Wr0ng-horse-battery"
    client = make(password=SecretStr(wrong))
    results = await asyncio.gather(*(client.read(LEVEL) for _ in range(5)), return_exceptions=True)
    assert all(isinstance(result, WinCCAuthError) for result in results)
    assert recorder.logins == 1
    for result in results:
        assert wrong not in str(result)
        assert "login as 'gateway' refused (401)" in str(result)
    with pytest.raises(WinCCAuthError):  # a later call tries again
        await client.read(LEVEL)
    assert recorder.logins == 2


async def test_a_cancelled_login_leaves_the_waiters_to_log_in(
    traced: tuple[TracedFactory, Recorder], sim: Simulator
) -> None:
    make, recorder = traced
    client = make()
    sim.faults.latency_ms = 50
    first = asyncio.create_task(client.read(LEVEL))
    second = asyncio.create_task(client.read(LEVEL))
    await recorder.sent.wait()  # the first login is on the wire
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert (await second).name == LEVEL
    assert recorder.logins == 2


async def test_close_logs_out(traced: tuple[TracedFactory, Recorder]) -> None:
    make, recorder = traced
    client = make()
    await client.read(LEVEL)
    await client.close()
    assert [e.status for e in recorder.paths("POST", "/api/auth/logout")] == [200]
    await client.read(LEVEL)  # a closed client logs in afresh rather than reuse the token
    assert recorder.logins == 2


# --- faults ---------------------------------------------------------------------------


async def test_outage_is_unavailable_and_passes(client: WinCCClient, sim: Simulator) -> None:
    await client.read(LEVEL)
    sim.faults.down = True
    with pytest.raises(WinCCUnavailable, match="simulated outage") as caught:
        await client.read_many([LEVEL])
    assert caught.value.status == 503
    sim.faults.down = False
    assert (await client.read(LEVEL)).name == LEVEL


async def test_outage_during_login_is_unavailable(
    traced: tuple[TracedFactory, Recorder], sim: Simulator
) -> None:
    make, _ = traced
    sim.faults.down = True
    with pytest.raises(WinCCUnavailable) as caught:
        await make().read(LEVEL)
    assert caught.value.status == 503


async def test_server_errors_are_unavailable(client: WinCCClient, sim: Simulator) -> None:
    await client.read(LEVEL)
    sim.faults.error_rate = 1.0
    with pytest.raises(WinCCUnavailable) as caught:
        await client.active_alarms()
    assert caught.value.status in (500, 503)


async def test_slow_server_is_a_timeout(
    traced: tuple[TracedFactory, Recorder], sim: Simulator
) -> None:
    make, _ = traced
    client = make(timeout=0.1)
    await client.read(LEVEL)
    sim.faults.latency_ms = 400
    with pytest.raises(WinCCTimeout, match=r"no answer within 0\.1 s"):
        await client.read(LEVEL)
    sim.faults.latency_ms = 0
    assert (await client.read(LEVEL)).name == LEVEL


async def test_dropped_connection_is_unavailable(client: WinCCClient, sim: Simulator) -> None:
    await client.read(LEVEL)
    sim.faults.drop_rate = 1.0
    with pytest.raises(WinCCUnavailable) as caught:
        await client.read_many([LEVEL, SETPOINT])
    assert isinstance(caught.value.__cause__, aiohttp.ClientError)


async def test_one_failing_chunk_fails_the_read_and_cancels_the_rest(
    traced: tuple[TracedFactory, Recorder], sim: Simulator
) -> None:
    make, recorder = traced
    client = make(batch_size=10, max_concurrency=4)
    await client.read(LEVEL)
    sim.faults.down = True
    with pytest.raises(WinCCUnavailable):  # the error itself, not an ExceptionGroup
        await client.read_many(sim.plant.names[:100])
    assert len(recorder.paths("POST", "/api/dp/read")) < 10


async def test_no_secret_in_any_error_or_log_line(
    traced: tuple[TracedFactory, Recorder], sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    make, recorder = traced
    client = make(timeout=0.1)
    errors: list[BaseException] = []

    async def collect(call: object) -> None:
        try:
            await call  # type: ignore[misc]
        except WinCCError as exc:
            errors.append(exc)

    await client.read(LEVEL)
    await collect(client.write(LEVEL, 1.0))
    await collect(client.write(SETPOINT, "x"))
    await collect(client.read("nope"))
    sim.faults.token_ttl = 1e-6
    await collect(client.read(LEVEL))
    sim.faults.token_ttl = 3600.0
    await collect(make(password=SecretStr(PASSWORD + "-wrong")).read(LEVEL))
    sim.faults.down = True
    await collect(client.read(LEVEL))
    sim.faults.down = False
    sim.faults.latency_ms = 400
    await collect(client.read(LEVEL))
    sim.faults.latency_ms = 0
    await client.close()

    assert len(errors) == 7
    secrets = {PASSWORD, *recorder.tokens()}
    assert len(secrets) >= 3
    texts = [record.getMessage() for record in caplog.records]
    for error in errors:
        chained: BaseException | None = error
        while chained is not None:
            texts += [str(chained), repr(chained), *getattr(chained, "__notes__", [])]
            chained = chained.__cause__ or chained.__context__
    for secret in secrets:
        assert not [text for text in texts if secret in text]


# --- answers too large to hold ----------------------------------------------------------


async def test_an_answer_larger_than_the_limit_is_a_protocol_error(
    client: WinCCClient, sim: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that answers with more than a small box can hold fails that request, not
    the gateway; smaller answers still pass."""
    monkeypatch.setattr(http, "MAX_ANSWER_BYTES", 2000)
    assert await client.read(LEVEL) == sim.plant.reading(LEVEL)
    with pytest.raises(WinCCProtocolError, match="more than 2000"):
        await client.read_many(sim.plant.names[:50])


async def test_an_answer_streamed_past_the_limit_is_cut_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without a Content-Length the limit holds while the body streams in."""
    monkeypatch.setattr(http, "MAX_ANSWER_BYTES", 100_000)

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            for _ in range(1000):  # 64 MB unless the reader gives up
                await response.write(b"[" + b"0," * 32_767 + b"0]")
        return response

    app = web.Application()
    app.router.add_get("/", endless)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/") as response,
        ):
            assert response.content_length is None
            with pytest.raises(WinCCProtocolError, match="more than 100000 bytes"):
                await http.read_answer(response, "GET /")
    finally:
        await runner.cleanup()
