"""A redundant WinCC pair: two simulators serving one plant. The serving one goes down;
the gateway follows the other, fills the failover gap from its archive, loses no change and
no seq, and writes only to the server it reads from."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiomqtt
import orjson
import pytest

from gateway.core.timestamps import now_ms, parse_ts
from gateway.core.topics import tag_path
from gateway.errors import WinCCUnavailable
from gateway.simulator.server import Simulator, SimulatorOptions
from gateway.wincc.connect import open_client
from gateway.wincc.redundant import RedundantClient
from gateway.wincc.settings import RestSettings, UnifiedSettings
from tests.conftest import Mosquitto, TlsFiles, logged, subscribe
from tests.gateway_harness import PREFIX, running_gateway, settings_for
from tests.test_durability import (
    POLL,
    final_seqs,
    lively,
    real_changes,
    start_collector,
    stop_task,
)

pytestmark = pytest.mark.slow

SETPOINT = "System1.Area1.Tank1.Setpoint"


@pytest.fixture
async def pair(tls: TlsFiles) -> AsyncIterator[tuple[Simulator, Simulator]]:
    """Two WinCC servers over HTTPS sharing one plant and its archive, as the servers of a
    redundant pair do."""
    options = SimulatorOptions(port=0, tags=200, alarms=5, change_rate=0.0, seed=7)
    async with (
        Simulator(options, ssl_context=tls.server_context()) as first,
        Simulator(options, ssl_context=tls.server_context()) as second,
    ):
        second.plant = first.plant
        yield first, second


async def test_serving_server_down_gateway_follows_the_partner_and_loses_no_change(
    pair: tuple[Simulator, Simulator], mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    first, second = pair
    lively(first, rate=1.0)
    collector, task = await start_collector(mosquitto)
    config = settings_for(
        first, mosquitto, tls, tmp_path, poll=POLL, commands={"writable": [SETPOINT]}
    )
    config["wincc"]["url"] = [first.url, second.url]
    try:
        with logged("gateway.wincc.redundant", f"switching to {second.url}") as switched:
            async with (
                running_gateway(config) as gateway,
                subscribe(mosquitto, f"{PREFIX}/cmd/result") as answers,
                aiomqtt.Client("127.0.0.1", mosquitto.port) as commander,
            ):
                tags = list(gateway.pollers[0].tags)
                await collector.wait_until(lambda: len(collector.order) > 50)
                assert second.reads == 0  # the first server serves
                down_at = now_ms()
                first.faults.latency_ms = 60_000  # it stops answering: requests time out
                await asyncio.wait_for(switched.wait(), 20)
                switched_at = now_ms()
                expected = {
                    tag_path(name): real_changes(first, name, down_at, switched_at) for name in tags
                }
                assert sum(map(len, expected.values())) > 5

                def received() -> dict[str, set[tuple[int, bytes]]]:
                    found: dict[str, set[tuple[int, bytes]]] = {tag: set() for tag in expected}
                    for tag, body in collector.order:
                        if tag in found:
                            found[tag].add((parse_ts(body["ts"]), orjson.dumps(body["value"])))
                    return found

                await collector.wait_until(
                    lambda: all(expected[t] <= received()[t] for t in expected)
                )
                assert gateway.pollers[0].stats.backfilled > 0
                await commander.publish(
                    f"{PREFIX}/cmd/write/{tag_path(SETPOINT)}", b'{"value": 12.5, "id": "w1"}'
                )
                answer = await answers.wait_for(lambda seen: len(seen) > 0)
                assert orjson.loads(answer[0].payload)["ok"] is True, answer[0].payload
        await collector.wait_complete(final_seqs(tmp_path / "buffer.db"))
    finally:
        await stop_task(task)
    assert collector.reused() == []
    assert second.write_log == [(SETPOINT, 12.5)]
    assert first.write_log == []


async def test_a_failed_write_is_not_repeated_on_the_partner_and_one_outage_fails_over_once(
    pair: tuple[Simulator, Simulator], tls: TlsFiles
) -> None:
    first, second = pair
    settings = RestSettings(
        url=[first.url, second.url],
        username="demo",
        password="demo",
        ca_file=tls.ca_file,
        timeout="2s",
    )
    async with open_client(settings) as client:
        assert isinstance(client, RedundantClient)
        await client.read(SETPOINT)
        first.faults.down = True
        outcomes = await asyncio.gather(
            client.write(SETPOINT, 1.0),
            *(client.read(SETPOINT) for _ in range(5)),
            return_exceptions=True,
        )
        assert all(isinstance(outcome, WinCCUnavailable) for outcome in outcomes)
        assert first.write_log == second.write_log == []  # not executed, not repeated
        assert (client.failovers, client.active_url) == (1, second.url)
        await client.write(SETPOINT, 2.0)
        first.faults.down = False
        reads = first.reads
        await client.read(SETPOINT)  # the partner answers: the gateway stays with it
    assert second.write_log == [(SETPOINT, 2.0)]
    assert first.reads == reads


async def test_a_unified_pair_reads_and_writes_where_redu_state_says_active(
    tls: TlsFiles,
) -> None:
    options = SimulatorOptions(
        port=0, tags=200, alarms=5, change_rate=0.0, seed=7, dialect="unified"
    )
    async with (
        Simulator(options, ssl_context=tls.server_context()) as first,
        Simulator(options, ssl_context=tls.server_context()) as second,
    ):
        second.plant = first.plant
        first.faults.redu_state = "PASSIVE"  # the first answers, but is not the active one
        path = options.graphql_path
        settings = UnifiedSettings(
            url=[first.url + path, second.url + path],
            mode="poll",
            username="demo",
            password="demo",
            ca_file=tls.ca_file,
            timeout="2s",
        )
        async with open_client(settings) as client:
            assert isinstance(client, RedundantClient)
            await until(lambda: client.active_url == second.url + path)
            await client.read(SETPOINT)
            await client.write(SETPOINT, 1.0)
            assert (first.write_log, second.write_log) == ([], [(SETPOINT, 1.0)])
            first.faults.redu_state, second.faults.redu_state = "ACTIVE", "PASSIVE"
            await until(lambda: client.active_url == first.url + path)
            await client.write(SETPOINT, 2.0)
        assert (first.write_log, second.write_log) == ([(SETPOINT, 2.0)], [(SETPOINT, 1.0)])


async def until(condition: Callable[[], bool]) -> None:
    """Wait until ``condition()`` holds (the client follows reduState on its own)."""
    async with asyncio.timeout(10):
        while not condition():  # noqa: ASYNC110 - nothing to await but the subscription
            await asyncio.sleep(0.02)
