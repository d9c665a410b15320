"""A gateway pair against mosquitto: the active instance is SIGKILLed over and over, the
standby takes over each time, and the subscriber sees every tag's seqs rise without a gap
and no seq carrying two different samples; an active instance cut off from the broker
stops polling and writing before the standby starts."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt
import orjson
import pytest

from gateway.core.topics import tag_path
from gateway.simulator.server import Simulator, SimulatorOptions
from tests.conftest import Mosquitto, TlsFiles, free_port, subscribe
from tests.gateway_harness import PREFIX, GatewayProcess, settings_for
from tests.tcp_proxy import tcp_proxy
from tests.test_durability import (
    SeqCollector,
    final_seqs,
    lively,
    start_collector,
    stop_task,
)

pytestmark = pytest.mark.slow

POLL = [{"name": "fast", "interval": "200ms", "tags": ["System1.Area1.Tank*.Level"]}]
TAKEOVERS = 20
SETPOINT = "System1.Area1.Tank1.Setpoint"


class TimedCollector(SeqCollector):
    """Records when each message arrived too, to measure takeover times."""

    def __init__(self, broker: Mosquitto) -> None:
        super().__init__(broker)
        self.arrivals: list[float] = []

    def record(self, topic: str, payload: Any) -> None:
        self.arrivals.append(time.monotonic())
        super().record(topic, payload)


class Instance:
    """One instance of the pair as a `wincc-gateway run` process, restartable."""

    def __init__(self, name: str, config: dict[str, Any], folder: Path) -> None:
        self.name = name
        self.config = config
        self.folder = folder
        self.process = GatewayProcess(config, folder)

    async def start(self) -> None:
        self.process = GatewayProcess(self.config, self.folder)
        await self.process.start()

    def said(self, text: str) -> int:
        return sum(text in line for line in self.process.lines)

    async def says(self, text: str, times: int = 1, timeout: float = 30) -> None:
        """Wait until the log holds ``text`` on ``times`` lines."""
        process = self.process
        async with asyncio.timeout(timeout), process._logged:
            await process._logged.wait_for(lambda: self.said(text) >= times)


def pair_config(
    sim: Simulator, broker: Mosquitto, tls: TlsFiles, folder: Path, instance: str
) -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    return settings_for(
        sim,
        broker,
        tls,
        folder,
        poll=POLL,
        alarms={"enabled": False},
        redundancy={"role": "auto", "takeover": "3s", "instance": instance},
    )


async def test_active_killed_again_and_again_the_standby_continues_every_seq(
    simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    lively(simulator, rate=1.0)
    stack = contextlib.AsyncExitStack()
    collector = TimedCollector(mosquitto)
    task = asyncio.create_task(collector.run())
    await asyncio.wait_for(collector.subscribed.wait(), 10)
    pair = [
        Instance(
            name, pair_config(simulator, mosquitto, tls, tmp_path / name, name), tmp_path / name
        )
        for name in ("a", "b")
    ]
    for instance in pair:
        instance.config["commands"] = {"writable": [SETPOINT]}
    takeover_times: list[float] = []
    try:
        answers = await stack.enter_async_context(subscribe(mosquitto, f"{PREFIX}/cmd/result"))
        commander = await stack.enter_async_context(aiomqtt.Client("127.0.0.1", mosquitto.port))
        active, standby = pair
        await active.start()
        await active.says("taking over")
        await standby.start()
        await standby.says("standby (instance b)")
        seen = len(collector.order)
        for turn in range(TAKEOVERS):
            # 20 samples from the active one, counted from its first: they may come while
            # the instance killed before it restarts
            await collector.wait_until(lambda seen=seen: len(collector.order) > seen + 20)
            await commander.publish(  # one write per turn, answered by the active one
                f"{PREFIX}/cmd/write/{tag_path(SETPOINT)}",
                orjson.dumps({"value": float(turn), "id": f"turn-{turn}"}),
            )
            await answers.wait_for(lambda got, n=turn: len(got) > n)
            took = standby.said("taking over")
            await active.process.stop(signal.SIGKILL)
            killed_after = len(collector.arrivals)
            await standby.says("taking over", took + 1)
            await collector.wait_until(lambda k=killed_after: len(collector.arrivals) > k)
            last_before = collector.arrivals[killed_after - 1]
            takeover_times.append(collector.arrivals[killed_after] - last_before)
            seen = killed_after
            await active.start()  # comes back, as the standby
            await active.says(f"standby (instance {active.name})")
            active, standby = standby, active
        seen = len(collector.order)
        await collector.wait_until(lambda: len(collector.order) > seen + 20)
        assert await standby.process.stop(signal.SIGTERM) == 0
        assert await active.process.stop(signal.SIGTERM) == 0
        final = final_seqs(active.folder / "buffer.db")
        await collector.wait_complete(final)
    finally:
        for instance in pair:
            if instance.process.process and instance.process.process.returncode is None:
                await instance.process.stop(signal.SIGKILL)
        await stack.aclose()
        await stop_task(task)
    assert collector.reused() == []
    assert all(orjson.loads(answer.payload)["ok"] for answer in answers.messages)
    # every command carried out once, by one writer
    assert simulator.write_log == [(SETPOINT, float(turn)) for turn in range(TAKEOVERS)]
    for tag, seqs in collector.samples.items():
        assert sorted(seqs) == list(range(1, max(seqs) + 1)), tag
    print(  # the figures of the README's redundancy section
        f"takeover over {len(takeover_times)}: p50 {statistics.median(takeover_times):.2f} s, "
        f"max {max(takeover_times):.2f} s"
    )


async def test_active_cut_off_from_the_broker_stops_before_the_standby_starts(
    mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    options = SimulatorOptions(port=0, tags=200, alarms=0, change_rate=1.0, seed=7)
    async with (
        Simulator(options, ssl_context=tls.server_context()) as first_server,
        Simulator(options, ssl_context=tls.server_context()) as second_server,
        tcp_proxy("127.0.0.1", mosquitto.port) as route,
    ):
        second_server.plant = first_server.plant  # one plant: each instance reads its own server
        second_server.faults.change_rate = 0.0
        collector, task = await start_collector(mosquitto)
        a = pair_config(first_server, mosquitto, tls, tmp_path / "a", "a")
        a["redundancy"]["takeover"] = "3s"
        a["mqtt"]["url"] = f"mqtt://127.0.0.1:{route.port}"  # the route that will be cut
        b = pair_config(second_server, mosquitto, tls, tmp_path / "b", "b")
        b["redundancy"]["takeover"] = "3s"
        b["commands"] = {"writable": [SETPOINT]}
        active, standby = Instance("a", a, tmp_path / "a"), Instance("b", b, tmp_path / "b")
        try:
            await active.start()
            await active.says("taking over")
            await standby.start()
            await standby.says("standby (instance b)")
            await collector.wait_until(lambda: len(collector.order) > 50)
            route.stall()  # no FIN, no RST: the broker only notices the silence
            await active.says("stopped polling and writing")
            assert standby.said("taking over") == 0  # never two writers
            reads = first_server.reads
            await standby.says("taking over")
            seen = len(collector.order)
            await collector.wait_until(lambda: len(collector.order) > seen + 50)
            async with aiomqtt.Client("127.0.0.1", mosquitto.port) as commander:
                await commander.publish(
                    f"{PREFIX}/cmd/write/{tag_path(SETPOINT)}", b'{"value": 3.5, "id": "w1"}'
                )
                await asyncio.wait_for(_written(second_server), 15)
            assert first_server.reads == reads  # the instance cut off polls nothing
            assert first_server.write_log == []
            assert second_server.reads > 0
            assert await standby.process.stop(signal.SIGTERM) == 0
            route.resume()
            assert await active.process.stop(signal.SIGTERM) == 0
            await collector.wait_complete(final_seqs(standby.folder / "buffer.db"))
        finally:
            for instance in (active, standby):
                if instance.process.process and instance.process.process.returncode is None:
                    await instance.process.stop(signal.SIGKILL)
            await stop_task(task)
    assert collector.reused() == []
    assert second_server.write_log == [(SETPOINT, 3.5)]


async def _written(server: Simulator) -> None:
    while not server.write_log:  # noqa: ASYNC110 - the simulator offers no write event
        await asyncio.sleep(0.05)


async def test_after_a_broker_crash_the_instance_that_held_the_turn_claims_it_again(
    simulator: Simulator, tls: TlsFiles, tmp_path: Path
) -> None:
    """The broker is killed (it sends no will) and comes back with what it had saved: the
    retained status still says online, under the claim of the instance that was active."""
    lively(simulator, rate=1.0)
    mosquitto = Mosquitto(tmp_path / "mosquitto", autosave=True)
    await mosquitto.start()
    collector, task = await start_collector(mosquitto)
    pair = [
        Instance(n, pair_config(simulator, mosquitto, tls, tmp_path / n, n), tmp_path / n)
        for n in ("a", "b")
    ]
    health = f"http://127.0.0.1:{free_port()}/health"
    pair[1].config["health"] = {"enabled": True, "listen": health.split("/")[2]}
    try:
        active, standby = pair
        await active.start()
        await active.says("taking over")
        await standby.start()
        await standby.says("standby (instance b)")
        await collector.wait_until(lambda: len(collector.order) > 20)
        ready = await health_until(health, lambda answer: answer[0] == 200)
        assert ready == (200, "standby", True)  # it can take over
        await mosquitto.kill()
        await active.says("standby again")
        assert await health_until(health, lambda answer: answer[0] == 503) == (
            503,
            "standby",
            False,
        )
        await mosquitto.start()
        await active.says("taking over", 2)
        assert await health_until(health, lambda answer: answer[0] == 200) == (200, "standby", True)
        seen = len(collector.order)
        await collector.wait_until(lambda: len(collector.order) > seen + 20)
        assert standby.said("taking over") == 0
        assert await standby.process.stop(signal.SIGTERM) == 0
        assert await active.process.stop(signal.SIGTERM) == 0
        await collector.wait_complete(final_seqs(active.folder / "buffer.db"))
    finally:
        for instance in pair:
            if instance.process.process and instance.process.process.returncode is None:
                await instance.process.stop(signal.SIGKILL)
        await stop_task(task)
        await mosquitto.stop()
    assert collector.reused() == []


async def test_the_active_instance_gives_way_to_a_later_claim_without_flapping(
    simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    lively(simulator, rate=1.0)
    collector, task = await start_collector(mosquitto)
    pair = [
        Instance(n, pair_config(simulator, mosquitto, tls, tmp_path / n, n), tmp_path / n)
        for n in ("a", "b")
    ]
    try:
        active, standby = pair
        await active.start()
        await active.says("taking over")
        await standby.start()
        await standby.says("standby (instance b)")
        await collector.wait_until(lambda: len(collector.order) > 20)
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as late:  # b's claim, late
            claim = orjson.dumps({"instance": "b", "at": 0})
            await late.publish(f"{PREFIX}/redundancy/claim", claim, qos=1, retain=True)
        await active.says("claimed the turn: giving way")
        await active.says("standby again")
        await standby.says("taking over")
        seen = len(collector.order)
        await collector.wait_until(lambda: len(collector.order) > seen + 100)
        assert (active.said("taking over"), standby.said("giving way")) == (1, 0)  # settled
        assert await active.process.stop(signal.SIGTERM) == 0
        assert await standby.process.stop(signal.SIGTERM) == 0
        await collector.wait_complete(final_seqs(standby.folder / "buffer.db"))
    finally:
        for instance in pair:
            if instance.process.process and instance.process.process.returncode is None:
                await instance.process.stop(signal.SIGKILL)
        await stop_task(task)
    assert collector.reused() == []


async def health_of(url: str) -> tuple[int, str, bool]:
    """Status, ``status`` and whether the broker is connected, of a standby's /health."""
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        body = await response.json()
        return response.status, body["status"], body["mqtt"]["connected"]


async def health_until(
    url: str, done: Callable[[tuple[int, str, bool]], bool]
) -> tuple[int, str, bool]:
    """Ask /health every 50 ms until ``done`` holds for the answer (fail after 20 s)."""
    async with asyncio.timeout(20):
        while not done(answer := await health_of(url)):  # noqa: ASYNC110 - polled over HTTP
            await asyncio.sleep(0.05)
        return answer
