"""Never lose a sample: broker outages, gateway crashes, WinCC outages, a full buffer.

A persistent QoS 1 subscriber (clean session off) records every seq of every tag; the
gateway's buffer file says which seq each tag reached. No seq may be missing, and a seq
seen twice must carry the same sample both times.
"""

from __future__ import annotations

import asyncio
import logging
import random
import signal
import sqlite3
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiomqtt
import orjson
import pytest

from gateway.core.timestamps import now_ms, parse_ts
from gateway.core.topics import tag_path
from gateway.simulator.server import Simulator, SimulatorOptions
from gateway.sink import PollStats
from tests.conftest import Mosquitto, TlsFiles
from tests.gateway_harness import (
    PREFIX,
    GatewayProcess,
    one_tag_per_request,
    running_gateway,
    settings_for,
)

pytestmark = pytest.mark.slow

TAGS = f"{PREFIX}/tags/"


class SeqCollector:
    """A persistent-session subscriber on every tag topic that reconnects by itself.

    It records each message the moment the client library hands it over (aiomqtt's
    ``queue_type`` hook): the library acknowledges a message on receipt, so one still
    waiting in its queue when the link drops would otherwise be lost by the test itself.
    """

    def __init__(self, broker: Mosquitto) -> None:
        self.broker = broker
        self.samples: dict[str, dict[int, set[bytes]]] = defaultdict(lambda: defaultdict(set))
        self.order: list[tuple[str, dict[str, Any]]] = []
        self.duplicates = 0
        self.distinct = 0
        """How many (tag, seq) pairs arrived at least once."""
        self.subscribed = asyncio.Event()
        self._progress = asyncio.Event()

    async def run(self) -> None:
        collector = self

        class Recording(asyncio.Queue[aiomqtt.Message]):
            def put_nowait(self, item: aiomqtt.Message) -> None:
                collector.record(str(item.topic), item.payload)

        while True:
            try:
                async with aiomqtt.Client(
                    "127.0.0.1",
                    self.broker.port,
                    identifier="seq-collector",
                    protocol=aiomqtt.ProtocolVersion.V311,
                    clean_session=False,
                    queue_type=Recording,
                ) as client:
                    await client.subscribe(TAGS + "#", qos=1)
                    self.subscribed.set()
                    async for _ in client.messages:
                        pass  # everything is recorded on arrival
            except aiomqtt.MqttError:
                await asyncio.sleep(0.2)  # the broker is away: try again shortly

    def record(self, topic: str, payload: Any) -> None:
        body = orjson.loads(payload)
        tag = topic.removeprefix(TAGS)
        sample = orjson.dumps({k: body[k] for k in ("value", "quality", "ts")})
        seen = self.samples[tag][body["seq"]]
        if seen:
            self.duplicates += 1
        else:
            self.distinct += 1
        seen.add(sample)
        self.order.append((tag, body))
        self._progress.set()

    async def wait_until(self, condition: Callable[[], bool], timeout: float = 20) -> None:
        """Wait, message by message, until ``condition()`` holds."""
        async with asyncio.timeout(timeout):
            while not condition():
                self._progress.clear()
                await self._progress.wait()

    def missing(self, final: dict[str, int]) -> dict[str, list[int]]:
        """Seqs not received, per tag, up to the final seq the gateway allocated."""
        gaps = {}
        for tag, last in final.items():
            absent = [seq for seq in range(1, last + 1) if seq not in self.samples[tag]]
            if absent:
                gaps[tag] = absent
        return gaps

    async def wait_complete(self, final: dict[str, int], timeout: float = 30) -> None:
        try:
            # Counting first keeps each message O(1); the full check runs once it can hold.
            expected = sum(final.values())
            await self.wait_until(
                lambda: self.distinct >= expected and not self.missing(final), timeout
            )
        except TimeoutError:
            gaps = self.missing(final)
            pytest.fail(f"seqs missing for {len(gaps)} tags, e.g. {list(gaps.items())[:3]}")

    def reused(self) -> list[tuple[str, int]]:
        """(tag, seq) pairs that carried two different samples."""
        return [
            (tag, seq)
            for tag, seqs in self.samples.items()
            for seq, samples in seqs.items()
            if len(samples) > 1
        ]


def final_seqs(buffer_db: Path) -> dict[str, int]:
    """The seq each tag reached, as the gateway's buffer recorded it (folded, or still in
    the log of tag states)."""
    with sqlite3.connect(buffer_db) as db:
        rows = db.execute(
            "SELECT name, max(seq) FROM (SELECT name, seq FROM tag_state "
            "UNION ALL SELECT name, seq FROM state_log) GROUP BY name"
        ).fetchall()
    return {tag_path(name): seq for name, seq in rows}


async def samples_made(buffer_db: Path, at_least: int, timeout: float = 30) -> None:
    """Wait until the gateway has made ``at_least`` samples in all (the sum of its seqs)."""
    async with asyncio.timeout(timeout):
        while sum(final_seqs(buffer_db).values()) < at_least:  # noqa: ASYNC110 - no event
            await asyncio.sleep(0.1)


async def start_collector(broker: Mosquitto) -> tuple[SeqCollector, asyncio.Task[None]]:
    collector = SeqCollector(broker)
    task = asyncio.create_task(collector.run())
    await asyncio.wait_for(collector.subscribed.wait(), 10)
    return collector, task


async def stop_task(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


class PollCounter:
    """Counts successful polls (the gateway's poll observer) and lets a test await a count."""

    def __init__(self) -> None:
        self.count = 0
        self._changed = asyncio.Event()

    def __call__(self, _group: str, _seconds: float) -> None:
        self.count += 1
        self._changed.set()

    async def reach(self, target: int) -> None:
        while self.count < target:
            self._changed.clear()
            await self._changed.wait()


async def readings_grow(stats: PollStats, target: int, timeout: float = 10) -> None:
    """Wait until a group's source has handed its sink ``target`` readings in all."""
    async with asyncio.timeout(timeout):
        while stats.readings < target:  # noqa: ASYNC110 - the counter offers no event
            await asyncio.sleep(0.05)


def lively(sim: Simulator, rate: float = 1.0) -> None:
    """Let the plant change: every tag about ``rate`` times a second."""
    sim.faults.change_rate = rate


POLL = [{"name": "fast", "interval": "100ms", "tags": ["System1.Area1.Tank*.*"]}]


async def test_broker_outage_loses_no_seq(
    simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    lively(simulator)
    collector, task = await start_collector(mosquitto)
    config = settings_for(simulator, mosquitto, tls, tmp_path, poll=POLL)
    try:
        async with running_gateway(config) as gateway:
            await gateway.session.connected.wait()
            await mosquitto.stop()
            db = tmp_path / "buffer.db"
            # the outage lasts until polling has gone on to disk for 100 samples (about 3 s,
            # several reconnect attempts refused)
            await samples_made(db, sum(final_seqs(db).values()) + 100)
            assert not gateway.session.connected.is_set()
            await mosquitto.start()
            await asyncio.wait_for(gateway.session.connected.wait(), 30)
        final = final_seqs(tmp_path / "buffer.db")
        assert sum(final.values()) > 100
        await collector.wait_complete(final)
    finally:
        await stop_task(task)
    assert collector.reused() == []


async def test_gateway_killed_during_broker_outage_loses_no_seq(
    simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    lively(simulator)
    collector, task = await start_collector(mosquitto)
    config = settings_for(simulator, mosquitto, tls, tmp_path, poll=POLL)
    try:
        first = GatewayProcess(config, tmp_path)
        await first.start()
        await collector.wait_until(lambda: len(collector.order) > 50)
        await mosquitto.stop()
        await asyncio.sleep(3)  # the outage, during which the gateway buffers to disk
        assert await first.stop(signal.SIGKILL) == -signal.SIGKILL
        backlog = sqlite3.connect(tmp_path / "buffer.db").execute("SELECT count(*) FROM outbox")
        assert backlog.fetchone()[0] > 0
        await mosquitto.start()
        second = GatewayProcess(config, tmp_path)
        await second.start()
        seen = len(collector.order)
        await collector.wait_until(lambda: len(collector.order) > seen + 100)
        assert await second.stop(signal.SIGTERM) == 0, second.stderr.decode()
        assert "from before the restart; they are sent first" in second.stderr.decode()
        await collector.wait_complete(final_seqs(tmp_path / "buffer.db"))
    finally:
        await stop_task(task)
    assert collector.reused() == []


async def test_wincc_outage_is_backfilled_from_history_in_order(
    simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    lively(simulator, rate=0.5)
    collector, task = await start_collector(mosquitto)
    config = settings_for(simulator, mosquitto, tls, tmp_path, poll=POLL)
    try:
        async with running_gateway(config) as gateway:
            tags = list(gateway.pollers[0].tags)
            await asyncio.sleep(1)
            down_at = now_ms()
            simulator.faults.down = True
            # the outage lasts until the plant has made 80 changes (about 3 s), four times
            # the least the check below asks for
            await plant_changes(simulator, tags, down_at, 80)
            up_at = now_ms()
            simulator.faults.down = False
            expected = {
                tag_path(name): real_changes(simulator, name, down_at, up_at) for name in tags
            }
            assert sum(map(len, expected.values())) > 20

            def backfilled() -> dict[str, set[tuple[int, bytes]]]:
                found: dict[str, set[tuple[int, bytes]]] = defaultdict(set)
                for tag, body in collector.order:
                    if body.get("backfill"):
                        found[tag].add((_ms(body["ts"]), orjson.dumps(body["value"])))
                return found

            await collector.wait_until(
                lambda: all(expected[t] <= backfilled()[t] for t in expected)
            )
            assert gateway.pollers[0].stats.backfilled >= sum(map(len, expected.values()))
        await collector.wait_complete(final_seqs(tmp_path / "buffer.db"))
    finally:
        await stop_task(task)
    flagged = [body for _, body in collector.order if body.get("backfill")]
    stamps = [_ms(body["ts"]) for body in flagged]
    assert stamps == sorted(stamps), "backfilled samples arrive in time order"
    for tag in expected:
        seqs = [body["seq"] for t, body in collector.order if t == tag]
        first_live_after = next(
            (
                i
                for i, (t, b) in enumerate(collector.order)
                if t == tag and _ms(b["ts"]) > up_at and not b.get("backfill")
            ),
            None,
        )
        if first_live_after is not None:
            live_seq = collector.order[first_live_after][1]["seq"]
            assert all(
                b["seq"] < live_seq for t, b in collector.order if t == tag and b.get("backfill")
            )
        assert seqs == sorted(seqs)


async def plant_changes(
    sim: Simulator, names: list[str], since_ms: int, at_least: int, timeout: float = 30
) -> None:
    """Wait until the plant has recorded ``at_least`` changes of ``names`` since then."""
    async with asyncio.timeout(timeout):
        while sum(len(real_changes(sim, name, since_ms, now_ms())) for name in names) < at_least:  # noqa: ASYNC110
            await asyncio.sleep(0.1)  # the plant offers no event for its history


def real_changes(sim: Simulator, name: str, start: int, end: int) -> set[tuple[int, bytes]]:
    """Good samples recorded in [start, end] whose value differs from the sample before
    (the plant may record a new timestamp for the same rounded value: not a change)."""
    history, _ = sim.plant.history(name, start_ms=0, end_ms=end, limit=10_000)
    found = set()
    for before, sample in zip([None, *history], history, strict=False):
        changed = before is None or before.value != sample.value or before.quality != 128
        if sample.ts_ms >= start and sample.quality == 128 and changed:
            found.add((sample.ts_ms, orjson.dumps(sample.value)))
    return found


def _ms(ts: str) -> int:
    return parse_ts(ts)


async def test_full_buffer_drops_by_policy_counts_and_keeps_polling(
    simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    lively(simulator, rate=2.0)
    config = settings_for(
        simulator, mosquitto, tls, tmp_path, poll=POLL, buffer={"max_size": "75KB"}
    )
    collector, task = await start_collector(mosquitto)
    full = asyncio.Event()
    polls = PollCounter()

    class OnFull(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("buffer full"):
                full.set()

    handler = OnFull()
    logging.getLogger("gateway.buffer").addHandler(handler)
    try:
        async with running_gateway(config, observe=polls) as gateway:
            await gateway.session.connected.wait()
            await mosquitto.stop()
            await asyncio.wait_for(full.wait(), 30)
            assert gateway.buffer.dropped > 0
            if simulator.options.dialect == "unified":  # subscribed: changes keep coming
                stats = gateway.pollers[0].stats
                await readings_grow(stats, stats.readings + 20)
            else:
                await asyncio.wait_for(polls.reach(polls.count + 5), 10)  # polling goes on
            assert gateway.buffer.size_bytes <= 75_000 * 1.2
            await mosquitto.start()
            await asyncio.wait_for(gateway.session.connected.wait(), 30)
        final = final_seqs(tmp_path / "buffer.db")
        # drop_oldest: the newest sample of every changing tag arrives, older ones may be
        # missing (tags that never changed had their only sample among the oldest).
        changing = {tag: last for tag, last in final.items() if last > 1}
        assert len(changing) > 10
        await collector.wait_until(
            lambda: all(last in collector.samples[tag] for tag, last in changing.items())
        )
    finally:
        logging.getLogger("gateway.buffer").removeHandler(handler)
        await stop_task(task)
    missing = sum(len(seqs) for seqs in collector.missing(final).values())
    assert missing > 0
    assert missing <= gateway.buffer.dropped


async def test_random_kills_never_skip_or_reuse_a_seq(
    simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    lively(simulator, rate=2.0)
    collector, task = await start_collector(mosquitto)
    config = settings_for(simulator, mosquitto, tls, tmp_path, poll=POLL)
    rng = random.Random(11)
    try:
        for _ in range(20):
            process = GatewayProcess(config, tmp_path)
            await process.start()
            seen = len(collector.order)
            await collector.wait_until(lambda seen=seen: len(collector.order) > seen)
            await asyncio.sleep(rng.uniform(0.0, 0.8))  # a random moment while publishing
            assert await process.stop(signal.SIGKILL) == -signal.SIGKILL
        last = GatewayProcess(config, tmp_path)
        await last.start()
        seen = len(collector.order)
        await collector.wait_until(lambda: len(collector.order) > seen)
        assert await last.stop(signal.SIGTERM) == 0
        final = final_seqs(tmp_path / "buffer.db")
        await collector.wait_complete(final)
    finally:
        await stop_task(task)
    assert collector.reused() == []
    assert sum(final.values()) > 200


async def test_a_poll_failing_half_way_is_backfilled_without_going_back_in_time(
    simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    """The first chunk of a poll is published, then WinCC goes away before the second is
    read. The backfill after the outage must not republish the first chunk's tag from
    the archive: its changes up to the published one were handled already."""
    first, second = "System1.Area1.Tank1.Setpoint", "System1.Area1.Valve1.Mode"
    config = one_tag_per_request(simulator, mosquitto, tls, tmp_path, [first, second])
    collector, task = await start_collector(mosquitto)

    def values(name: str) -> list[Any]:
        return [body["value"] for tag, body in collector.order if tag == tag_path(name)]

    try:
        async with running_gateway(config):
            await collector.wait_until(lambda: bool(values(first) and values(second)))
            simulator.faults.latency_ms = 300
            simulator.plant.force(first, 11.0, now_ms=now_ms())
            simulator.plant.force(first, 12.0, now_ms=now_ms() + 1)
            await collector.wait_until(lambda: 12.0 in values(first))
            simulator.faults.down = True  # the second chunk's request is still under way
            await asyncio.sleep(1)  # an outage of a second; nothing to wait for
            simulator.faults.down = False
            simulator.plant.force(second, "after", now_ms=now_ms())
            await collector.wait_until(lambda: "after" in values(second))
    finally:
        await stop_task(task)
    assert values(first)[1:] == [12.0], "11.0 is older than what was published"


BACKLOG = 50_000


async def test_gateway_killed_while_draining_a_large_backlog_loses_no_seq(
    mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    """A backlog of 50,000 samples builds up while the broker is away; the gateway is
    killed (SIGKILL) in the middle of sending it, and the next start sends the rest: every
    seq arrives, none carries two samples."""
    options = SimulatorOptions(port=0, tags=5000, alarms=0, change_rate=10.0, seed=5)
    async with Simulator(options, ssl_context=tls.server_context()) as simulator:
        poll = [{"name": "all", "interval": "500ms", "tags": ["System1.**"]}]
        config = settings_for(
            simulator,
            mosquitto,
            tls,
            tmp_path,
            poll=poll,
            alarms={"enabled": False},
            mqtt={"drain_timeout": "500ms"},  # the broker is away anyway
        )
        collector, task = await start_collector(mosquitto)
        polls = PollCounter()
        try:
            async with running_gateway(config, polls) as gateway:
                await mosquitto.stop()
                while len(gateway.buffer) < BACKLOG:
                    await polls.reach(polls.count + 1)
            simulator.faults.change_rate = 0.0  # from here on only the backlog is sent
            await mosquitto.start()
            draining = GatewayProcess(config, tmp_path)
            await draining.start()
            await collector.wait_until(lambda: len(collector.order) > BACKLOG // 10, 60)
            assert await draining.stop(signal.SIGKILL) == -signal.SIGKILL
            with sqlite3.connect(tmp_path / "buffer.db") as db:
                left = db.execute("SELECT count(*) FROM outbox").fetchone()[0]
            assert left > BACKLOG // 10, "killed in the middle of the backlog"
            last = GatewayProcess(config, tmp_path)
            await last.start()
            final = final_seqs(tmp_path / "buffer.db")
            assert sum(final.values()) >= BACKLOG
            await collector.wait_complete(final, timeout=120)
            assert await last.stop(signal.SIGTERM) == 0
        finally:
            await stop_task(task)
    assert collector.reused() == []
