"""A sink decides only the fresh readings of a chunk whose answer follows one it decided,
and everything again once anything else may have decided one of the chunk's tags: the
answers parsed by the real ``ChunkAnswers``, the samples committed to a real buffer."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path

import orjson
import pytest

from gateway.buffer.outbox import DurableBuffer
from gateway.config import BackfillSettings
from gateway.core.models import Reading, ReadResult
from gateway.core.samples import SampleDecider
from gateway.core.timestamps import format_ts, now_ms
from gateway.core.topics import TopicMap
from gateway.formats.json_topics import PerTagJson
from gateway.sink import TagSink
from gateway.wincc.concurrency import read_in_chunks
from gateway.wincc.rest_answers import ChunkAnswers

GOOD = 128
NAMES = ["Area1.Pump", "Area1.Valve", "Area1.Level"]
T0 = now_ms() - 60_000


def answer(values: dict[str, float], ts: dict[str, int] | None = None) -> bytes:
    """A bulk read answer as the ``rest`` dialect's server gives it."""
    stamps = ts or {}
    items = [
        {
            "name": name,
            "value": value,
            "quality": GOOD,
            "timestamp": format_ts(stamps.get(name, T0)),
        }
        for name, value in values.items()
    ]
    return json.dumps({"values": items}).encode()


class Archive:
    """A WinCC archive with fixed readings."""

    def __init__(self, readings: list[Reading]) -> None:
        self.readings = readings

    async def history(self, name: str, start_ms: int, end_ms: int) -> AsyncIterator[Reading]:
        for reading in self.readings:
            if reading.name == name and start_ms <= reading.ts_ms <= end_ms:
                yield reading


class CountingDecider(SampleDecider):
    """The real decider, remembering how many readings each decision was given."""

    __slots__ = ("given",)

    def __init__(self) -> None:
        super().__init__([GOOD], drop_bad=False)
        self.given: list[int] = []

    def decide(
        self, readings: Iterable[Reading], deadband: float, *, revise: bool = True
    ) -> list[tuple[Reading, int]]:
        readings = list(readings)
        self.given.append(len(readings))
        return super().decide(readings, deadband, revise=revise)


class Harness:
    """A sink on a real buffer, fed by a real ``ChunkAnswers``."""

    def __init__(self, buffer: DurableBuffer, decider: CountingDecider, archive: Archive) -> None:
        self.answers = ChunkAnswers()
        self.buffer = buffer
        self.decided = decider.given
        self.sink = TagSink(
            name="fast",
            deadband=0.0,
            archive=archive,
            decider=decider,
            output=PerTagJson(
                prefix="p", qos=1, retain=True, topic_map=TopicMap(NAMES), version="t"
            ),
            buffer=buffer,
            backfill=BackfillSettings(),
        )

    def parse(self, body: bytes) -> ReadResult:
        result = self.answers.parse(NAMES, body)
        assert result is not None
        return result

    async def poll(self, body: bytes) -> None:
        await self.sink.publish(self.parse(body))

    async def published(self) -> list[tuple[str, float, int]]:
        """(tag, value, seq) of every sample committed so far, in order."""
        taken = await self.buffer.take(100)
        self.buffer.ack(taken)
        return [
            (message.topic.rsplit("/", 1)[-1], body["value"], body["seq"])
            for _, message in taken
            for body in [orjson.loads(message.payload)]
        ]


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    decider = CountingDecider()
    buffer = DurableBuffer(tmp_path / "b.db", 10**9, on_stored=decider.stored, on_lost=decider.lost)
    await buffer.open()
    try:
        yield Harness(buffer, decider, Archive([]))
    finally:
        await buffer.close()


async def test_an_answer_that_follows_a_decided_one_has_only_its_fresh_readings_decided(
    harness: Harness,
) -> None:
    await harness.poll(answer({"Area1.Pump": 1.0, "Area1.Valve": 0.0, "Area1.Level": 5.0}))
    await harness.poll(answer({"Area1.Pump": 1.0, "Area1.Valve": 1.0, "Area1.Level": 5.0}))
    await harness.poll(answer({"Area1.Pump": 1.0, "Area1.Valve": 1.0, "Area1.Level": 5.0}))
    assert harness.decided == [3, 1, 0]
    assert await harness.published() == [
        ("Pump", 1.0, 1),
        ("Valve", 0.0, 1),
        ("Level", 5.0, 1),
        ("Valve", 1.0, 2),
    ]


async def test_a_tag_decided_in_between_is_decided_again_from_the_unchanged_answer(
    harness: Harness,
) -> None:
    """A write's read-back published 7; the server's next bulk answer still says 5, byte
    for byte: MQTT must say 5 again, as WinCC does."""
    body = answer({"Area1.Pump": 5.0, "Area1.Valve": 0.0, "Area1.Level": 5.0})
    await harness.poll(body)
    await harness.sink.publish(ReadResult([Reading("Area1.Pump", 7.0, GOOD, T0 + 1)]))
    await harness.poll(body)
    assert harness.decided == [3, 1, 3]
    assert (await harness.published())[3:] == [("Pump", 7.0, 2), ("Pump", 5.0, 3)]


def test_the_revision_changes_with_whatever_the_lineage_does_not_account_for() -> None:
    decider = SampleDecider([GOOD], drop_bad=False)
    reading = Reading("Area1.Pump", 1.0, GOOD, T0)
    before = decider.revision
    decider.decide([reading], 0.0, revise=False)
    assert decider.revision == before
    decider.decide([reading], 0.0)
    assert decider.revision == before + 1
    decider.lost([("Area1.Pump", 1, 1.0, GOOD, T0)])
    assert decider.revision == before + 2
    decider.restore({"Area1.Pump": 1}, {})
    assert decider.revision == before + 3


async def test_a_read_in_chunks_keeps_each_chunks_lineage_or_none_if_one_has_none() -> None:
    chunks = {name: ChunkAnswers() for name in NAMES}

    async def read_chunk(names: Sequence[str]) -> ReadResult:
        parsed = chunks[names[0]].parse(names, answer({names[0]: 1.0}))
        assert parsed is not None
        return parsed

    merged = await read_in_chunks(NAMES, 1, read_chunk)
    assert merged.lineages is not None
    assert [lineage.chunk for lineage in merged.lineages] == [(name, 1) for name in NAMES]
    assert [lineage.readings for lineage in merged.lineages] == [[r] for r in merged.readings]

    async def one_without(names: Sequence[str]) -> ReadResult:
        result = await read_chunk(names)
        return ReadResult(result.readings) if names[0] == NAMES[1] else result

    assert (await read_in_chunks(NAMES, 1, one_without)).lineages is None
