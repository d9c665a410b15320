"""The alarm sink commits what a source reports, a full list or one change at a time,
to the real buffer: retained states, clears and events, and each alarm's stored state."""

from __future__ import annotations

from pathlib import Path

import orjson

from gateway.alarm_sink import AlarmSink
from gateway.buffer.outbox import DurableBuffer
from gateway.core.models import Alarm
from gateway.core.topics import TopicMap
from gateway.formats.json_topics import PerTagJson

CAME = Alarm("A1", "T", "too hot", 1, "came", False, 1_000, None, None)


async def committed(buffer: DurableBuffer) -> list[tuple[str, bytes]]:
    return [(m.topic, m.payload) for _, m in await buffer.take(100)]


async def test_single_changes_publish_what_a_full_list_would(tmp_path: Path) -> None:
    buffer = DurableBuffer(tmp_path / "b.db", 10**9)
    await buffer.open()
    output = PerTagJson(prefix="p", qos=1, retain=True, topic_map=TopicMap(), version="t")
    sink = AlarmSink(output=output, buffer=buffer)
    try:
        await sink.change(CAME)
        came = await committed(buffer)
        assert [topic for topic, _ in came] == ["p/alarms/A1", "p/alarms/events"]
        assert orjson.loads(came[1][1])["event"] == "came"
        assert sink.active == {"A1": CAME}

        await sink.remove("A1")
        gone = await committed(buffer)
        assert gone[0] == ("p/alarms/A1", b"")  # the retained state is cleared
        assert orjson.loads(gone[1][1])["event"] == "went"
        await sink.remove("A1")  # no longer active: nothing to say
        assert sink.active == {}
        assert sink.stats.published == 4
    finally:
        await buffer.close()

    again = DurableBuffer(tmp_path / "b.db", 10**9)
    restored = await again.open()
    await again.close()
    assert restored.alarms == {}  # the clear was stored with the messages
