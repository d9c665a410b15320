"""The SPEC's JSON formats as a table entry: every topic, encoding and command rule that
the rest of the gateway now asks the format for, and the table that ``mqtt.payload``
chooses from. End to end over a broker: tests/test_pipeline.py, tests/test_commands.py."""

from __future__ import annotations

from typing import get_args

import orjson
import pytest

from gateway.config import GatewaySettings
from gateway.core.alarms import AlarmDiff, AlarmTransition
from gateway.core.models import Alarm, Reading
from gateway.core.topics import TopicMap
from gateway.errors import CommandRejected
from gateway.formats import FORMATS, build_format
from gateway.formats.base import FormatContext, Route, Status
from gateway.formats.json_topics import BatchJson, PerTagJson
from gateway.mqtt_settings import MqttSettings

GOOD, BAD = 128, 8
TAG = "System1.Area/1.Level"


def per_tag(retain: bool = True) -> PerTagJson:
    return PerTagJson(prefix="p", qos=1, retain=retain, topic_map=TopicMap([TAG]), version="9.9")


def test_the_table_offers_exactly_the_formats_mqtt_payload_accepts() -> None:
    accepted = get_args(MqttSettings.model_fields["payload"].annotation)
    assert sorted(FORMATS) == sorted(accepted)
    assert not build_format(
        FormatContext(GatewaySettings(mqtt=MqttSettings(payload="per-tag")))
    ).per_read
    assert build_format(FormatContext(GatewaySettings(mqtt=MqttSettings(payload="batch")))).per_read


def test_per_tag_sends_one_message_per_sample_on_its_escaped_tag_path() -> None:
    samples = [(Reading(TAG, 1.5, GOOD, 0), 7, True), (Reading(TAG, 2.0, BAD, 1), 8, False)]
    first, second = per_tag(retain=False).samples("fast", samples, backfill=True)
    assert first.topic == "p/tags/System1/Area%2F1/Level"
    assert (first.qos, first.retain) == (1, False)
    assert orjson.loads(first.payload) == {
        "value": 1.5,
        "quality": GOOD,
        "good": True,
        "ts": "1970-01-01T00:00:00.000Z",
        "seq": 7,
        "backfill": True,
    }
    assert orjson.loads(second.payload)["quality_text"]
    assert per_tag().finish is None  # the buffer holds what is sent


def test_batch_sends_one_unretained_message_per_read_split_by_size() -> None:
    batch = BatchJson(
        prefix="p", qos=0, retain=True, topic_map=TopicMap(), version="9.9", max_bytes=1024
    )
    samples = [(Reading(f"T{n}", n, GOOD, n), n, True) for n in range(100)]
    parts = batch.samples("fast/1", samples, backfill=False)
    assert len(parts) > 1
    assert {(m.topic, m.qos, m.retain) for m in parts} == {("p/batch/fast%2F1", 0, False)}
    tags = [item["tag"] for m in parts for item in orjson.loads(m.payload)["samples"]]
    assert tags == [f"T{n}" for n in range(100)]


def test_alarms_are_retained_states_clears_and_events() -> None:
    came = Alarm("A/1", "T", "hot", 1, "came", False, 1_000, None, None)
    diff = AlarmDiff(changed=[came], cleared=["old"], events=[AlarmTransition("came", came, 1_000)])
    state, clear, event = per_tag().alarms(diff)
    assert (state.topic, state.retain, orjson.loads(state.payload)["id"]) == (
        "p/alarms/A%2F1",
        True,
        "A/1",
    )
    assert (clear.topic, clear.payload, clear.retain) == ("p/alarms/old", b"", True)
    assert (event.topic, event.retain, orjson.loads(event.payload)["event"]) == (
        "p/alarms/events",
        False,
        "came",
    )


def test_the_status_is_the_will_the_connect_message_and_the_last_word() -> None:
    output = per_tag()
    will = output.will(0)
    (online,) = output.on_connect(Status("online", 5_000, "up"))
    (source,) = output.on_source(Status("online", 5_000, "down"))
    leave = output.on_leave(Status("offline", 5_000, "up"))
    for message in (will, online, source, leave):
        assert (message.topic, message.qos, message.retain) == ("p/status", 1, True)
    assert orjson.loads(will.payload)["state"] == "offline"
    assert orjson.loads(online.payload) == {
        "state": "online",
        "since": "1970-01-01T00:00:05.000Z",
        "version": "9.9",
        "source": "up",
    }
    assert orjson.loads(source.payload)["source"] == "down"
    assert orjson.loads(leave.payload)["state"] == "offline"


def test_commands_route_by_topic_and_answers_never_go_to_own_topics() -> None:
    commands = per_tag().commands
    assert commands.filters == ("p/cmd/write/#", "p/cmd/ack/#")
    assert commands.route("p/cmd/write/System1/Level") == Route("tag", "System1/Level")
    assert commands.route("p/cmd/ack/A1") == Route("alarm", "A1")
    assert commands.route("p/cmd/other") is None
    assert commands.result_topic == "p/cmd/result"
    assert not commands.owns("p/cmd/result")
    assert not commands.owns("p/tagsx")
    for own in ("p/tags/x", "p/status", "p/cmd/write/x", "p/batch", "p/alarms/events"):
        assert commands.owns(own)
    assert commands.parse_write(b'{"value": 3, "id": "r1"}').request_id == "r1"
    assert commands.request_id(b'{"id": "r2"}') == "r2"
    assert commands.parse_ack(b"").comment is None
    # One command per message, every one answered, no controls, nothing watched or held.
    route = Route("tag", "System1/Level")
    assert commands.split(route, b"1") == [(route, b"1")]
    assert commands.answers is True
    with pytest.raises(CommandRejected):
        commands.control("rebirth", b"")
    fmt = per_tag()
    assert (fmt.watched, fmt.holding, fmt.observe("p/cmd/write/x", b"1")) == ((), False, None)
