"""The tag poller's scheduling, without servers: a scripted client, a recording sink, and
once the real sink on a real buffer file."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from gateway.buffer.outbox import DurableBuffer
from gateway.config import BackfillSettings
from gateway.core.models import Lineage, Reading, ReadResult
from gateway.core.samples import SampleDecider
from gateway.core.timestamps import now_ms
from gateway.core.topics import TopicMap
from gateway.errors import WinCCError, WinCCUnavailable
from gateway.formats.json_topics import PerTagJson
from gateway.polling import SPREAD, SourceHealth, TagPoller, newest_time
from gateway.sink import PollStats, TagSink

INTERVAL = 0.02
TAG = "System1.A"
OTHER = "System1.B"
GOOD = 192

Answer = ReadResult | WinCCError


class ScriptedClient:
    """Answers each read with the next scripted answer; the last one stands after that.
    Remembers when each read came (loop time) and which names it asked for."""

    def __init__(self, answers: list[Answer], archive: list[Reading] | None = None) -> None:
        self.answers = answers
        self.archive = archive or []
        self.batch_size = 1000
        self.reads: list[tuple[float, list[str]]] = []  # (when, names)

    async def read_many(self, names: Sequence[str]) -> ReadResult:
        self.reads.append((asyncio.get_running_loop().time(), list(names)))
        answer = self.answers[min(len(self.reads), len(self.answers)) - 1]
        if isinstance(answer, WinCCError):
            raise answer
        return answer

    async def history(self, name: str, start_ms: int, end_ms: int) -> AsyncIterator[Reading]:
        for reading in self.archive:
            if reading.name == name and start_ms <= reading.ts_ms <= end_ms:
                yield reading


class RecordingSink:
    """Stands in for a TagSink: records what the poller asks of it, in order."""

    def __init__(self, *, gap_open: bool = False) -> None:
        self.stats = PollStats()
        self.gap_open = gap_open
        self.per_read = False
        self.calls: list[tuple[Any, ...]] = []

    def begin(self) -> None:
        self.calls.append(("begin",))

    def interrupted(self) -> None:
        self.gap_open = True
        self.calls.append(("interrupted",))

    async def fill(self, end_ms: int, slack_ms: int, result: ReadResult) -> None:
        self.gap_open = False
        self.calls.append(("fill", end_ms, result))

    async def publish(self, result: ReadResult) -> None:
        self.calls.append(("publish", result))

    async def advance(self, newest: int, duration_ms: int, read_at: int) -> None:
        self.calls.append(("advance", newest))

    def named(self, *names: str) -> list[tuple[Any, ...]]:
        return [call for call in self.calls if call[0] in names]


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Check ``condition`` every 5 ms: poll counters have no event to await."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def polling(poller: TagPoller) -> AsyncIterator[None]:
    task = asyncio.create_task(poller.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def good(value: float, ts_ms: int) -> ReadResult:
    return ReadResult(readings=[Reading(TAG, value, GOOD, ts_ms)])


def poller_for(client: ScriptedClient, sink: Any, source: SourceHealth) -> TagPoller:
    return TagPoller(
        name="fast", interval=INTERVAL, tags=[TAG], client=client, sink=sink, source=source
    )


async def test_a_good_read_streams_its_chunks_to_the_sink_and_counts_the_poll() -> None:
    result = good(1.0, 1000)
    client = ScriptedClient([result])
    sink, source = RecordingSink(), SourceHealth()
    poller = poller_for(client, sink, source)
    async with polling(poller):
        await until(lambda: poller.stats.polls >= 2)
    assert source.state == "up"
    assert sink.calls[:3] == [("begin",), ("publish", result), ("advance", 1000)]
    assert not sink.named("fill", "interrupted")
    assert poller.stats.failures == 0


async def test_a_failed_read_counts_a_failure_opens_a_gap_and_backs_off() -> None:
    down = WinCCUnavailable("connection refused")
    client = ScriptedClient([good(1.0, 1000), down, down, down, down])
    sink, source = RecordingSink(), SourceHealth()
    poller = poller_for(client, sink, source)
    async with polling(poller):
        await until(lambda: poller.stats.failures >= 3)
    assert source.state == "down"
    assert poller.stats.polls == 1
    assert ("interrupted",) in sink.calls
    assert sink.named("publish") == [("publish", client.answers[0])]  # nothing after
    failed_at = [when for when, *_ in client.reads[1:4]]
    waits = [later - earlier for earlier, later in itertools.pairwise(failed_at)]
    # the backoff's floor (0.05 s) is longer than the interval: no retry on the interval
    assert all(wait >= 0.045 for wait in waits), waits


async def test_a_read_where_every_tag_failed_counts_as_a_failed_poll() -> None:
    client = ScriptedClient([ReadResult(errors={TAG: "no such tag"})])
    sink, source = RecordingSink(), SourceHealth()
    poller = poller_for(client, sink, source)
    async with polling(poller):
        await until(lambda: poller.stats.failures >= 1)
    assert poller.stats.polls == 0
    assert not sink.named("advance")  # the mark stays where the last good poll left it
    assert ("interrupted",) in sink.calls


async def test_a_good_read_after_failures_has_the_gap_filled_before_it_is_published() -> None:
    first, later = good(1.0, 1000), good(3.0, 5000)
    down = WinCCUnavailable("connection refused")
    client = ScriptedClient([first, down, down, later])
    sink, source = RecordingSink(), SourceHealth()
    poller = poller_for(client, sink, source)
    async with polling(poller):
        await until(lambda: poller.stats.polls >= 2)
    assert source.state == "up"
    after = sink.calls[len(sink.calls) - sink.calls[::-1].index(("interrupted",)) :]
    assert [call[0] for call in after if call[0] != "begin"][:3] == [
        "fill",
        "publish",
        "advance",
    ]
    assert sink.named("fill") == [("fill", 5000, later)]
    # not streamed while the gap is filled: the archive goes first, then the whole read
    assert ("publish", later) in after


async def test_a_gap_left_by_the_last_run_is_filled_before_the_first_poll_is_published() -> None:
    result = good(1.0, 1000)
    client = ScriptedClient([result])
    client.batch_size = 1
    sink = RecordingSink(gap_open=True)
    poller = TagPoller(
        name="fast",
        interval=INTERVAL,
        tags=[TAG, OTHER],
        client=client,
        sink=sink,
        source=SourceHealth(),
    )
    async with polling(poller):
        await until(lambda: poller.stats.polls >= 2)
    # not streamed while the gap is filled: the archive goes first, then the whole read,
    # asked of the client in one call; streamed afterwards, in chunks of its batch size
    assert [call[0] for call in sink.calls[:4]] == ["begin", "fill", "publish", "advance"]
    assert [names for _, names in client.reads[:3]] == [[TAG, OTHER], [TAG], [OTHER]]


class ChunkClient:
    """Answers every read with one good reading per name asked for; remembers when each
    read came (loop time) and which names it asked for. A read that asks for ``held``
    waits until ``release`` is set; one that asks for ``failing`` fails."""

    def __init__(self, batch_size: int, *, held: str = "", failing: str = "") -> None:
        self.batch_size = batch_size
        self.held = held
        self.failing = failing
        self.holding = asyncio.Event()
        self.release = asyncio.Event()
        self.reads: list[tuple[float, list[str]]] = []

    async def read_many(self, names: Sequence[str]) -> ReadResult:
        self.reads.append((asyncio.get_running_loop().time(), list(names)))
        if self.failing in names:
            raise WinCCUnavailable("connection refused")
        if self.held in names:
            self.holding.set()
            await self.release.wait()
        return ReadResult(readings=[Reading(name, 1.0, GOOD, 1000) for name in names])


GROUP = [f"System1.T{i}" for i in range(8)]
SLOW = 1.0  # four chunks of two, spread over half of it: one every 0.125 s


def slow_poller(client: ChunkClient, sink: RecordingSink, source: SourceHealth) -> TagPoller:
    return TagPoller(
        name="slow", interval=SLOW, tags=GROUP, client=client, sink=sink, source=source
    )


async def test_a_streamed_poll_spreads_its_chunks_over_half_the_interval() -> None:
    client = ChunkClient(batch_size=2)
    sink = RecordingSink()
    poller = slow_poller(client, sink, SourceHealth())
    async with polling(poller):
        await until(lambda: poller.stats.polls >= 1)
    chunks = [GROUP[i : i + 2] for i in range(0, len(GROUP), 2)]
    assert [names for _, names in client.reads[:4]] == chunks  # one request per chunk
    first = client.reads[0][0]
    starts = [when - first for when, _ in client.reads[:4]]
    gap = SLOW * SPREAD / len(chunks)
    # chunk i starts i * gap after the first (never sooner), all within half the interval
    assert all(start >= i * gap - 0.001 for i, start in enumerate(starts)), starts
    assert starts[-1] < SLOW * SPREAD, starts


async def test_a_streamed_poll_publishes_each_chunk_before_the_last_is_in() -> None:
    client = ChunkClient(batch_size=2, held=GROUP[-1])
    sink = RecordingSink()
    poller = slow_poller(client, sink, SourceHealth())
    async with polling(poller):
        await client.holding.wait()  # the last chunk's read is on its way, not in
        await until(lambda: len(sink.named("publish")) == 3)
        assert not sink.named("advance")
        client.release.set()
        await until(lambda: poller.stats.polls >= 1)
    published = [[r.name for r in call[1].readings] for call in sink.named("publish")]
    assert published[:4] == [GROUP[i : i + 2] for i in range(0, len(GROUP), 2)]
    assert [call[0] for call in sink.calls[:6]] == ["begin"] + ["publish"] * 4 + ["advance"]


async def test_a_failing_chunk_fails_the_whole_poll_and_stops_the_chunks_after_it() -> None:
    client = ChunkClient(batch_size=2, failing=GROUP[2])
    sink, source = RecordingSink(), SourceHealth()
    poller = slow_poller(client, sink, source)
    async with polling(poller):
        await until(lambda: poller.stats.failures >= 1)
    assert source.state == "down"  # the chunk's own error, not a group of them
    assert poller.stats.polls == 0
    assert ("interrupted",) in sink.calls
    assert not sink.named("advance")
    # the chunks still waiting for their start were cancelled, never read
    assert not any(GROUP[4] in names or GROUP[6] in names for _, names in client.reads)


async def test_the_real_sink_commits_the_archive_in_time_order_between_live_values(
    tmp_path: Path,
) -> None:
    t0 = now_ms()
    down = WinCCUnavailable("connection refused")
    archived = [Reading(TAG, 2.0, GOOD, t0 + 10), Reading(TAG, 2.5, GOOD, t0 + 15)]
    client = ScriptedClient([good(1.0, t0), down, good(3.0, t0 + 20)], archive=archived)
    decider = SampleDecider([GOOD], drop_bad=False)
    buffer = DurableBuffer(tmp_path / "b.db", 10**9, on_stored=decider.stored, on_lost=decider.lost)
    await buffer.open()
    topic_map = TopicMap([TAG])
    sink = TagSink(
        name="fast",
        deadband=0.0,
        archive=client,
        decider=decider,
        output=PerTagJson(prefix="p", qos=1, retain=True, topic_map=topic_map, version="t"),
        buffer=buffer,
        backfill=BackfillSettings(),
    )
    poller = poller_for(client, sink, SourceHealth())
    try:
        async with polling(poller):
            await until(lambda: sink.stats.backfilled == 2 and poller.stats.polls >= 2)
        taken = await buffer.take(10)
    finally:
        await buffer.close()
    bodies = [orjson.loads(message.payload) for _, message in taken]
    assert [(body["value"], body["seq"], body.get("backfill", False)) for body in bodies] == [
        (1.0, 1, False),
        (2.0, 2, True),
        (2.5, 3, True),
        (3.0, 4, False),
    ]
    assert poller.stats is sink.stats
    assert sink.stats.published == 2
    assert sink.mark is not None and sink.mark.wincc_ms >= t0


def test_the_newest_time_of_an_answer_that_follows_counts_only_its_fresh_readings() -> None:
    old, fresh, other = (
        Reading(TAG, 1.0, GOOD, 5_000),
        Reading(OTHER, 2.0, GOOD, 3_000),
        Reading("System1.C", 3.0, GOOD, 4_000),
    )
    result = ReadResult(
        [old, fresh, other],
        lineages=[
            Lineage(("a", 2), 2, [old, fresh], follows=1, fresh=[fresh]),
            Lineage(("b", 1), 3, [other]),  # follows no earlier answer: all of it counts
        ],
    )
    assert newest_time(result, whole=False) == 4_000
    assert newest_time(result, whole=True) == 5_000
    assert newest_time(ReadResult([old, fresh]), whole=False) == 5_000
    assert newest_time(ReadResult(), whole=False) == 0
