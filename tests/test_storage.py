"""Storage faults on real filesystems: a disk that runs full while the gateway runs, one
that turns read-only, and a bug in the buffer's background work.

The full disk is a small tmpfs of the test's own, filled by a file the test writes into
it; deleting the file gives the space back. The read-only one is a loop-mounted ext4
image that is told to report an error, which makes the kernel remount it read-only.
"""

from __future__ import annotations

import asyncio
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.alarm_sink import AlarmSink
from gateway.app import Gateway
from gateway.buffer.outbox import DurableBuffer
from gateway.buffer.store import BufferStore
from gateway.config import GatewaySettings
from gateway.core.models import Alarm
from gateway.core.topics import TopicMap, tag_path
from gateway.formats.json_topics import PerTagJson
from gateway.simulator.server import Simulator
from gateway.wincc.connect import open_client
from tests.conftest import Mosquitto, TlsFiles, break_disk, fill_disk, logged
from tests.gateway_harness import running_gateway, settings_for
from tests.test_durability import (
    POLL,
    PollCounter,
    SeqCollector,
    final_seqs,
    lively,
    start_collector,
    stop_task,
)
from tests.test_health import health_until, samples

pytestmark = pytest.mark.slow

STORAGE_DROPS = ("wincc_gateway_samples_dropped_total", (("reason", "storage"),))
PUBLISHED = ("wincc_gateway_samples_published_total", (("group", "fast"),))


async def scrape(http: aiohttp.ClientSession, url: str) -> dict[Any, float]:
    async with http.get(f"{url}/metrics") as response:
        return samples(await response.text())


def newest(collector: SeqCollector, tag: str) -> tuple[Any, int] | None:
    """Value and quality of the highest seq a tag's subscriber has received."""
    bodies = [body for name, body in collector.order if name == tag]
    if not bodies:
        return None
    body = max(bodies, key=lambda b: b["seq"])
    return body["value"], body["quality"]


async def test_a_full_disk_shows_counts_its_drops_and_heals_with_every_tag_current(
    simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path, small_disk: Path
) -> None:
    lively(simulator, rate=2.0)
    config = settings_for(
        simulator,
        mosquitto,
        tls,
        tmp_path,
        poll=POLL,
        buffer={"path": str(small_disk / "buffer.db")},
        health={"enabled": True, "listen": "127.0.0.1:0"},
        alarms={"enabled": False},
    )
    collector, task = await start_collector(mosquitto)
    polls = PollCounter()
    filler = None
    try:
        async with (
            running_gateway(config, observe=polls) as gateway,
            aiohttp.ClientSession() as http,
        ):
            url = f"http://127.0.0.1:{gateway.health.port}"
            await health_until(http, url, lambda status, _: status == 200)
            filler = fill_disk(small_disk)
            _, body = await health_until(http, url, lambda status, _: status == 503)
            assert body["reasons"] == ["buffer: cannot store (database or disk is full)"]
            published = (await scrape(http, url))[PUBLISHED]
            await asyncio.wait_for(polls.reach(polls.count + 10), 10)  # polling goes on
            lively(simulator, rate=0.0)  # the values now are the ones every tag ends with
            await asyncio.wait_for(polls.reach(polls.count + 3), 10)
            seen = await scrape(http, url)
            assert seen[STORAGE_DROPS] > 0
            assert seen[PUBLISHED] == published  # nothing counts as published meanwhile
            assert (await health_until(http, url, lambda s, _: s == 503))[0] == 503

            filler.unlink()
            filler = None
            await health_until(http, url, lambda status, _: status == 200)
            current = {
                tag_path(name): (reading.value, reading.quality)
                for name in gateway.pollers[0].tags
                for reading in [simulator.plant.reading(name)]
            }
            assert len(current) > 10
            try:
                await collector.wait_until(
                    lambda: all(newest(collector, tag) == now for tag, now in current.items())
                )
            except TimeoutError:
                stale = {t: v for t, v in current.items() if newest(collector, t) != v}
                pytest.fail(f"{len(stale)} tags never got their current value: {stale}")
        await collector.wait_complete(final_seqs(small_disk / "buffer.db"))
    finally:
        if filler is not None:
            filler.unlink()
        await stop_task(task)
    assert collector.reused() == []


async def test_a_disk_turned_read_only_shows_and_counts_its_drops_while_polling_goes_on(
    simulator: Simulator,
    mosquitto: Mosquitto,
    tls: TlsFiles,
    tmp_path: Path,
    fragile_disk: Path,
) -> None:
    lively(simulator, rate=2.0)
    config = settings_for(
        simulator,
        mosquitto,
        tls,
        tmp_path,
        poll=POLL,
        buffer={"path": str(fragile_disk / "buffer.db")},
        health={"enabled": True, "listen": "127.0.0.1:0"},
        alarms={"enabled": False},
    )
    polls = PollCounter()
    async with (
        running_gateway(config, observe=polls) as gateway,
        aiohttp.ClientSession() as http,
    ):
        url = f"http://127.0.0.1:{gateway.health.port}"
        await health_until(http, url, lambda status, _: status == 200)
        break_disk(fragile_disk)
        _, body = await health_until(http, url, lambda status, _: status == 503)
        assert body["reasons"] == ["buffer: cannot store (disk I/O error)"]
        dropped = (await scrape(http, url))[STORAGE_DROPS]
        await asyncio.wait_for(polls.reach(polls.count + 10), 10)  # polling goes on
        assert (await scrape(http, url))[STORAGE_DROPS] > dropped
        assert (await health_until(http, url, lambda s, _: s == 503))[0] == 503


async def test_a_bug_in_the_buffers_background_work_stops_the_gateway(
    simulator: Simulator,
    mosquitto: Mosquitto,
    tls: TlsFiles,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Not swallowed: the gateway exits with the error (and a service manager restarts
    it) instead of running on while acknowledged messages are never deleted."""

    def broken(_store: BufferStore, _ids: list[int]) -> None:
        raise RuntimeError("a bug in the deletes")

    monkeypatch.setattr(BufferStore, "delete", broken)
    settings = GatewaySettings(**settings_for(simulator, mosquitto, tls, tmp_path))
    stop = asyncio.Event()
    async with open_client(settings.wincc) as client:
        run = asyncio.create_task(Gateway(settings, client).run(stop))
        await asyncio.wait({run}, timeout=15)
        stopped_by_itself = run.done()
        stop.set()
        error = await asyncio.gather(run, return_exceptions=True)
    assert stopped_by_itself, "the gateway ran on after its background work failed"
    assert isinstance(error[0], BaseException)
    assert "a bug in the deletes" in "".join(traceback.format_exception(error[0]))


async def test_an_alarm_change_the_disk_refused_is_published_once_it_takes_writes_again(
    small_disk: Path,
) -> None:
    """The alarm's retained state must not stay behind: the change is diffed again."""
    buffer = DurableBuffer(small_disk / "buffer.db", 10**9)
    await buffer.open()
    poller = AlarmSink(
        output=PerTagJson(prefix="p", qos=1, retain=True, topic_map=TopicMap(), version="t"),
        buffer=buffer,
    )
    came = Alarm("A1", "T", "too hot", 1, "came", False, 1_000, None, None)
    await poller.publish([came])
    filler = fill_disk(small_disk)
    acked = replace(came, acked=True, acked_at=2_000, text="too hot" + " " * 5000)
    with logged("gateway.buffer", "cannot store messages") as refused:
        await poller.publish([acked])
    assert refused.is_set()
    filler.unlink()
    await poller.publish([acked])
    buffer.close_for_new()
    sent = [(message.topic, message.payload) for _, message in await buffer.take(100)]
    await buffer.close()
    assert [topic for topic, _ in sent] == ["p/alarms/A1", "p/alarms/events"] * 2
    assert b'"acked":true' in sent[2][1]
    assert b'"event":"acked"' in sent[3][1]
