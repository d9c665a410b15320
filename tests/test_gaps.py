"""Every gap in the data is filled from the WinCC archive, or shows in the log and metrics.

Whatever broke the polls (an outage, a proxy's login page, refused credentials, a link
that stalls, the gateway's own downtime), the changes made meanwhile arrive afterwards
flagged ``"backfill": true``, in seq order and without a seq reused, with the window
measured on WinCC's clock, not the host's.
"""

from __future__ import annotations

import asyncio
import logging
import re
import signal
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.app import Gateway
from gateway.core.timestamps import parse_ts
from gateway.core.topics import tag_path
from gateway.simulator.plant import UnknownTagError
from gateway.simulator.server import Simulator, SimulatorOptions
from tests.conftest import Mosquitto, TlsFiles
from tests.gateway_harness import GatewayProcess, running_gateway, settings_for
from tests.tcp_proxy import tcp_proxy
from tests.test_durability import (
    SeqCollector,
    final_seqs,
    lively,
    real_changes,
    start_collector,
    stop_task,
)

pytestmark = pytest.mark.slow

POLL = [{"name": "fast", "interval": "100ms", "tags": ["System1.Area1.Tank*.*"]}]
CHANGES = 15
"""Changes the plant makes during each outage: enough to see any of them go missing."""


async def until(condition: Callable[[], bool], timeout: float = 15) -> None:
    """Check ``condition`` every 20 ms until it holds: poll counters and the plant's
    archive have no event to await."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


def backfilled(collector: SeqCollector) -> dict[str, set[tuple[int, bytes]]]:
    """(ts, value) of the samples that arrived flagged as backfill, per tag topic."""
    found: dict[str, set[tuple[int, bytes]]] = defaultdict(set)
    for tag, body in collector.order:
        if body.get("backfill"):
            found[tag].add((parse_ts(body["ts"]), orjson.dumps(body["value"])))
    return found


def republished(collector: SeqCollector) -> list[tuple[str, bytes]]:
    """Samples published again under a new seq: the archive's copy of a sample already
    published must be dropped, not sent twice."""
    seqs: dict[tuple[str, bytes], set[int]] = defaultdict(set)
    for tag, body in collector.order:
        sample = orjson.dumps([body["ts"], body["value"], body["quality"]])
        seqs[tag, sample].add(body["seq"])
    return [key for key, found in seqs.items() if len(found) > 1]


def changes(sim: Simulator, tags: list[str], start: int, end: int) -> dict[str, set[Any]]:
    """What the plant really changed in [start, end] (its own clock), per tag topic."""
    return {tag_path(name): real_changes(sim, name, start, end) for name in tags}


async def plant_changes(sim: Simulator, tags: list[str], since: int) -> None:
    """Wait until the plant made ``CHANGES`` changes since ``since`` (its own clock)."""
    await until(lambda: sum(map(len, changes(sim, tags, since, sim.now()).values())) >= CHANGES)


async def fill_after(
    sim: Simulator,
    gateway: Gateway,
    collector: SeqCollector,
    begin: Callable[[], None],
    end: Callable[[], None],
) -> None:
    """Break the polls with ``begin``, let the plant change, mend them with ``end``, and
    wait for every change made meanwhile to arrive flagged as backfill."""
    poller = gateway.pollers[0]
    await collector.wait_until(lambda: len(collector.order) > 10)
    failures = poller.stats.failures
    begin()
    await until(lambda: poller.stats.failures > failures)
    down_at = sim.now()  # no poll in flight can succeed any more
    await plant_changes(sim, poller.tags, down_at)
    up_at = sim.now()
    end()
    expected = changes(sim, poller.tags, down_at, up_at)
    await collector.wait_until(
        lambda: all(expected[t] <= backfilled(collector)[t] for t in expected), timeout=15
    )


async def check_outage(
    sim: Simulator,
    broker: Mosquitto,
    tls: TlsFiles,
    tmp_path: Path,
    *,
    begin: Callable[[], None],
    end: Callable[[], None],
    **sections: dict[str, Any],
) -> None:
    """An outage made by ``begin``/``end`` is filled, and no seq is lost or reused."""
    lively(sim, rate=2.0)
    collector, task = await start_collector(broker)
    config = settings_for(sim, broker, tls, tmp_path, poll=POLL, **sections)
    try:
        async with running_gateway(config) as gateway:
            await fill_after(sim, gateway, collector, begin, end)
        await collector.wait_complete(final_seqs(tmp_path / "buffer.db"))
    finally:
        await stop_task(task)
    assert collector.reused() == []
    assert republished(collector) == []


@pytest.mark.parametrize(
    "fault",
    [
        "html_login",  # a proxy's login page with status 200 instead of the API
        "unauthorized",  # refused credentials (401) until they are accepted again
    ],
)
async def test_an_outage_seen_as_wrong_answers_is_backfilled(
    simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path, fault: str
) -> None:
    await check_outage(
        simulator,
        mosquitto,
        tls,
        tmp_path,
        begin=lambda: setattr(simulator.faults, fault, True),
        end=lambda: setattr(simulator.faults, fault, False),
    )


async def test_a_poll_where_wincc_knows_none_of_the_tags_is_a_gap_that_is_filled(
    simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    """A WinCC runtime that has its project unloaded answers every tag with an error."""
    with pytest.MonkeyPatch.context() as patch:

        def begin() -> None:
            # the API knows no tag; the plant, its archive and this test still do
            patch.setattr(simulator.plant, "_lookup", dict(simulator.plant.index).__getitem__)
            patch.setattr(simulator.plant, "index", {})

        await check_outage(simulator, mosquitto, tls, tmp_path, begin=begin, end=patch.undo)


async def test_an_outage_is_filled_when_the_wincc_clock_runs_an_hour_ahead(
    simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    simulator.faults.clock_offset = 3600.0

    def begin() -> None:
        simulator.faults.down = True

    def end() -> None:
        simulator.faults.down = False

    await check_outage(simulator, mosquitto, tls, tmp_path, begin=begin, end=end)


async def test_a_stalled_link_times_out_and_is_backfilled(
    simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    port = int(simulator.url.rsplit(":", 1)[1])
    async with tcp_proxy("127.0.0.1", port) as proxy:
        url = f"https://127.0.0.1:{proxy.port}"
        await check_outage(
            simulator,
            mosquitto,
            tls,
            tmp_path,
            begin=proxy.stall,
            end=proxy.resume,
            wincc={"url": url, "timeout": "500ms"},
        )


async def test_an_untrusted_certificate_is_backfilled_once_the_real_server_is_back(
    simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    """The WinCC address leads to a server whose certificate the gateway does not trust
    (a DNS or load-balancer mistake) for a while."""
    port = int(simulator.url.rsplit(":", 1)[1])
    stranger_options = SimulatorOptions(port=0, tags=10, alarms=0, change_rate=0.0, tls=True)
    async with Simulator(stranger_options) as stranger, tcp_proxy("127.0.0.1", port) as proxy:
        stranger_port = int(stranger.url.rsplit(":", 1)[1])

        def begin() -> None:
            proxy.target = ("127.0.0.1", stranger_port)
            proxy.cut()

        def end() -> None:
            proxy.target = ("127.0.0.1", port)
            proxy.cut()

        url = f"https://127.0.0.1:{proxy.port}"
        await check_outage(
            simulator, mosquitto, tls, tmp_path, begin=begin, end=end, wincc={"url": url}
        )


async def test_changes_while_the_gateway_was_stopped_arrive_as_backfill(
    simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    lively(simulator, rate=2.0)
    collector, task = await start_collector(mosquitto)
    config = settings_for(simulator, mosquitto, tls, tmp_path, poll=POLL)
    tags = [
        name
        for name in simulator.plant.index
        if name.startswith("System1.Area1.Tank") and name.count(".") == 3
    ]
    try:
        first = GatewayProcess(config, tmp_path)
        await first.start()
        await collector.wait_until(lambda: len(collector.order) > 20)
        assert await first.stop(signal.SIGTERM) == 0, first.stderr.decode()
        down_at = simulator.now()
        await plant_changes(simulator, tags, down_at)
        up_at = simulator.now()
        expected = changes(simulator, tags, down_at, up_at)
        second = GatewayProcess(config, tmp_path)
        await second.start()
        await collector.wait_until(
            lambda: all(expected[t] <= backfilled(collector)[t] for t in expected)
        )
        assert await second.stop(signal.SIGTERM) == 0, second.stderr.decode()
        await collector.wait_complete(final_seqs(tmp_path / "buffer.db"))
    finally:
        await stop_task(task)
    assert collector.reused() == []
    assert republished(collector) == []


ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
"""A timestamp as the gateway writes it."""


def unfilled_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The log lines that report a gap left unfilled."""
    return [r.getMessage() for r in caplog.records if "not filled" in r.getMessage()]


async def test_a_gap_longer_than_max_gap_is_logged_with_its_range_and_counted(
    simulator: Simulator,
    mosquitto: Mosquitto,
    tls: TlsFiles,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    lively(simulator, rate=2.0)
    config = settings_for(
        simulator, mosquitto, tls, tmp_path, poll=POLL, backfill={"max_gap": "1s"}
    )
    caplog.set_level(logging.WARNING, logger="gateway.sink")
    async with running_gateway(config) as gateway:
        poller = gateway.pollers[0]
        await until(lambda: poller.stats.polls > 3)
        simulator.faults.down = True
        await until(lambda: poller.stats.failures > 0)
        down_at = simulator.now()
        await until(lambda: simulator.now() - down_at > 2500)
        simulator.faults.down = False
        await until(lambda: poller.stats.backfilled > 0)
        registry = gateway.metrics.registry
        gaps = registry.get_sample_value("wincc_gateway_gaps_unfilled_total", {"group": "fast"})
        seconds = registry.get_sample_value(
            "wincc_gateway_gap_unfilled_seconds_total", {"group": "fast"}
        )
    assert gaps == 1
    assert seconds is not None and seconds >= 1.0
    lines = unfilled_lines(caplog)
    assert len(lines) == 1, lines
    assert re.search(rf"group fast: .*{ISO} to {ISO}", lines[0]), lines[0]
    assert "max_gap" in lines[0]


async def test_a_failed_history_request_is_logged_with_its_range_and_counted(
    simulator: Simulator,
    mosquitto: Mosquitto,
    tls: TlsFiles,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    lively(simulator, rate=2.0)
    config = settings_for(simulator, mosquitto, tls, tmp_path, poll=POLL)
    caplog.set_level(logging.WARNING, logger="gateway.sink")

    def no_archive(name: str, **_: Any) -> Any:
        raise UnknownTagError(f"no archive for {name}")

    with pytest.MonkeyPatch.context() as patch:
        async with running_gateway(config) as gateway:
            poller = gateway.pollers[0]
            await until(lambda: poller.stats.polls > 3)
            patch.setattr(simulator.plant, "history", no_archive)
            simulator.faults.down = True
            await until(lambda: poller.stats.failures > 0)
            down_at = simulator.now()
            await until(lambda: simulator.now() - down_at > 1000)  # the plant changes meanwhile
            polls = poller.stats.polls
            simulator.faults.down = False
            await until(lambda: poller.stats.polls > polls)
            gaps = gateway.metrics.registry.get_sample_value(
                "wincc_gateway_gaps_unfilled_total", {"group": "fast"}
            )
    assert gaps == 1
    assert poller.stats.backfilled == 0
    lines = unfilled_lines(caplog)
    assert len(lines) == 1, lines
    assert re.search(rf"group fast: gap from {ISO} to {ISO} .*history request failed", lines[0])
