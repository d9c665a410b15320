"""The publishing adapter's bookkeeping, against a stand-in for paho's client and the real
buffer: the window, PUBACKs matched by message id, requeue on a dropped link, drops.

The end-to-end behaviour over a real broker is in tests/test_mqtt_faults.py,
tests/test_durability.py and tests/test_pipeline.py; these run in milliseconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from paho.mqtt import client as mqtt_client
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateway.buffer.outbox import DurableBuffer
from gateway.buffer.store import Message
from gateway.core.pacing import Pacer
from gateway.core.platforms import PLATFORMS
from gateway.errors import MqttUnavailable
from gateway.mqtt.publisher import Publisher

SUCCESS = ReasonCode(PacketTypes.PUBACK, "Success")


class Info:
    """What paho's ``publish()`` returns, as far as the publisher reads it."""

    def __init__(self, mid: int, rc: int, *, published: bool) -> None:
        self.mid, self.rc, self._published = mid, rc, published

    def is_published(self) -> bool:
        return self._published


class FakePaho:
    """paho's ``publish()``, its outgoing queue and ``on_publish`` callback: records what
    was handed over (decoding the PUBLISH packets the publisher builds itself); the test
    plays the broker by acknowledging message ids, as the link does: the buffer's QoS 1
    messages through ``Publisher.settle``, the rest through ``on_publish``."""

    def __init__(self, publisher: Publisher | None = None, *, mqtt5: bool = True) -> None:
        self.publisher = publisher
        self.mqtt5 = mqtt5
        self.sent: dict[int, str] = {}  # mid -> topic, in the order handed over
        self.built: set[int] = set()  # mids of packets the publisher built
        self.writes = 0  # entries in paho's outgoing queue
        self.forwarded: list[int] = []  # acknowledgements passed on to aiomqtt's handler
        self.on_publish: Any = self._aiomqtt_handler
        self.refuse_after: int | None = None  # messages paho takes before the link is gone
        self._next_mid = 0

    @property
    def _sock(self) -> object | None:
        if self.refuse_after is not None and self._next_mid >= self.refuse_after:
            return None
        return self

    def _aiomqtt_handler(self, *args: Any) -> None:
        self.forwarded.append(args[2])

    def _mid_generate(self) -> int:
        self._next_mid += 1
        return self._next_mid

    def _packet_queue(self, command: int, packet: bytes, mid: int, qos: int) -> None:
        assert (command, mid, qos) == (mqtt_client.PUBLISH, 0, 1)
        self.writes += 1
        self.built.update(decode_publishes(packet, self.sent, mqtt5=self.mqtt5))

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> Info:
        if "#" in topic or "+" in topic:
            raise ValueError("Publish topic cannot contain wildcards.")
        mid = self._mid_generate()
        self.sent[mid] = topic
        return Info(mid, mqtt_client.MQTT_ERR_SUCCESS, published=qos == 0)

    def ack(self, mid: int, reason: ReasonCode = SUCCESS) -> None:
        if mid in self.built:
            assert self.publisher is not None
            if self.publisher.settle(mid, reason.value):
                return
        self.on_publish(self, None, mid, reason, Properties(PacketTypes.PUBACK))

    def mid_of(self, topic: str) -> int:
        return next(mid for mid, sent in self.sent.items() if sent == topic)


def decode_publishes(packets: bytes, into: dict[int, str], *, mqtt5: bool) -> list[int]:
    """The packet ids of a run of QoS 1 PUBLISH packets without properties, recording each
    one's topic in ``into``."""
    mids = []
    pos = 0
    while pos < len(packets):
        assert packets[pos] & 0xF6 == 0x32  # PUBLISH, QoS 1, not a duplicate
        pos += 1
        length, shift = 0, 0
        while True:
            byte = packets[pos]
            pos += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        end = pos + length
        topic_length = int.from_bytes(packets[pos : pos + 2], "big")
        topic = packets[pos + 2 : pos + 2 + topic_length].decode()
        mid = int.from_bytes(packets[pos + 2 + topic_length : pos + 4 + topic_length], "big")
        if mqtt5:
            assert packets[pos + 4 + topic_length] == 0  # no properties
        into[mid] = topic
        mids.append(mid)
        pos = end
    return mids


async def wait_until(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - the stand-in offers no event
            await asyncio.sleep(0)


async def settle() -> None:
    """Let the publisher run until it waits (for room, or for messages)."""
    for _ in range(20):
        await asyncio.sleep(0)


@pytest.fixture
async def buffer(tmp_path: Path) -> AsyncIterator[DurableBuffer]:
    store = DurableBuffer(tmp_path / "buffer.db", 10_000_000)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


def messages(*names: str, qos: int = 1) -> list[Message]:
    return [Message(f"p/{name}", b"{}", qos, False) for name in names]


async def taken_topics(buffer: DurableBuffer) -> list[str]:
    """What the buffer hands out next, in order (after a drain ended)."""
    buffer.close_for_new()
    return [message.topic for _, message in await buffer.take(100)]


async def test_the_window_bounds_what_is_in_flight_and_each_puback_makes_room(
    buffer: DurableBuffer,
) -> None:
    paho = FakePaho()
    publisher = Publisher(buffer, mqtt5=True)
    paho.publisher = publisher
    await buffer.append(messages(*"abcdefgh"))
    drain = asyncio.create_task(publisher.drain(paho, receive_maximum=3))  # type: ignore[arg-type]
    try:
        await wait_until(lambda: len(paho.sent) == 3)
        await settle()
        assert list(paho.sent.values()) == ["p/a", "p/b", "p/c"]
        paho.ack(paho.mid_of("p/b"))  # out of order: the broker may answer so
        await wait_until(lambda: len(paho.sent) == 4)
        await settle()
        assert len(paho.sent) == 4
        assert (publisher.published, buffer.delivered) == (1, 1)
    finally:
        drain.cancel()
        await asyncio.wait({drain})
    assert await taken_topics(buffer) == ["p/a", "p/c", "p/d", "p/e", "p/f", "p/g", "p/h"]


async def test_acknowledgements_of_other_publishes_reach_aiomqtt_and_its_handler_returns(
    buffer: DurableBuffer,
) -> None:
    paho = FakePaho(mqtt5=False)
    own = paho.on_publish
    publisher = Publisher(buffer, mqtt5=False)
    paho.publisher = publisher
    await buffer.append(messages("a"))
    drain = asyncio.create_task(publisher.drain(paho))  # type: ignore[arg-type]
    await wait_until(lambda: len(paho.sent) == 1)
    paho.ack(999)  # the status or a command answer, published through aiomqtt
    assert paho.forwarded == [999]
    assert publisher.published == 0
    paho.ack(paho.mid_of("p/a"))
    assert paho.forwarded == [999]
    assert publisher.published == 1
    buffer.close_for_new()
    await asyncio.wait_for(drain, 2)  # closed, and everything acknowledged
    assert paho.on_publish == own


async def test_a_plain_puback_settles_a_buffered_message_and_leaves_others_to_paho(
    buffer: DurableBuffer,
) -> None:
    paho = FakePaho()
    publisher = Publisher(buffer, mqtt5=True)
    paho.publisher = publisher
    await buffer.append(messages("a", "b"))
    drain = asyncio.create_task(publisher.drain(paho))  # type: ignore[arg-type]
    try:
        await wait_until(lambda: len(paho.sent) == 2)
        assert publisher.settle(999) is False  # aiomqtt's own publish: paho handles it
        assert publisher.settle(paho.mid_of("p/a")) is True
        assert publisher.settle(paho.mid_of("p/a")) is False  # once only
        assert (publisher.published, buffer.delivered) == (1, 1)
    finally:
        drain.cancel()
        await asyncio.wait({drain})
    assert publisher.settle(paho.mid_of("p/b")) is False  # the drain ended: nothing in flight
    assert await taken_topics(buffer) == ["p/b"]


async def test_a_closed_outbox_ends_the_drain_only_once_everything_is_acknowledged(
    buffer: DurableBuffer,
) -> None:
    paho = FakePaho()
    publisher = Publisher(buffer, mqtt5=True)
    paho.publisher = publisher
    await buffer.append(messages("a", "b"))
    drain = asyncio.create_task(publisher.drain(paho))  # type: ignore[arg-type]
    await wait_until(lambda: len(paho.sent) == 2)
    buffer.close_for_new()
    paho.ack(paho.mid_of("p/a"))
    await settle()
    assert not drain.done()
    paho.ack(paho.mid_of("p/b"))
    await asyncio.wait_for(drain, 2)
    assert (publisher.published, len(buffer)) == (2, 0)


async def test_what_is_in_flight_goes_back_in_front_when_the_link_drops(
    buffer: DurableBuffer,
) -> None:
    paho = FakePaho()
    publisher = Publisher(buffer, mqtt5=True)
    paho.publisher = publisher
    await buffer.append(messages("a", "b", "c", "d", "e"))
    drain = asyncio.create_task(publisher.drain(paho, receive_maximum=3))  # type: ignore[arg-type]
    await wait_until(lambda: len(paho.sent) == 3)
    paho.ack(paho.mid_of("p/b"))
    await wait_until(lambda: len(paho.sent) == 4)
    drain.cancel()  # the session's link watchdog, or the broker gone
    await asyncio.wait({drain})
    assert await taken_topics(buffer) == ["p/a", "p/c", "p/d", "p/e"]


async def test_a_publish_paho_cannot_send_ends_the_link_and_loses_nothing(
    buffer: DurableBuffer,
) -> None:
    paho = FakePaho()
    paho.refuse_after = 2
    publisher = Publisher(buffer, mqtt5=True)
    paho.publisher = publisher
    await buffer.append(messages("a", "b", "c", "d"))
    with pytest.raises(MqttUnavailable, match=r"\[code:4\]"):
        await asyncio.wait_for(publisher.drain(paho), 2)  # type: ignore[arg-type]
    assert await taken_topics(buffer) == ["p/a", "p/b", "p/c", "p/d"]


async def test_qos0_messages_count_as_delivered_once_written(buffer: DurableBuffer) -> None:
    paho = FakePaho()
    publisher = Publisher(buffer, mqtt5=True)
    paho.publisher = publisher
    await buffer.append(messages("a", "b", qos=0))
    drain = asyncio.create_task(publisher.drain(paho))  # type: ignore[arg-type]
    buffer.close_for_new()
    await asyncio.wait_for(drain, 2)
    assert (publisher.published, buffer.delivered) == (2, 2)


async def test_messages_the_broker_can_never_take_are_dropped_counted_and_logged_once(
    buffer: DurableBuffer, caplog: pytest.LogCaptureFixture
) -> None:
    paho = FakePaho()
    publisher = Publisher(buffer, mqtt5=True)
    paho.publisher = publisher
    await buffer.append(
        [
            Message("p/big", b"x" * 200, 1, False),  # over the broker's maximum packet size
            Message("p/" + "t" * 70_000, b"{}", 1, False),  # over MQTT's topic length
            Message("p/#", b"{}", 1, False),  # paho refuses it
            Message("p/fits", b"x" * 50, 1, False),
        ]
    )
    with caplog.at_level(logging.ERROR, logger="gateway.mqtt.publisher"):
        drain = asyncio.create_task(publisher.drain(paho, max_packet=100))  # type: ignore[arg-type]
        await wait_until(lambda: len(paho.sent) == 1)
        paho.ack(paho.mid_of("p/fits"))
        buffer.close_for_new()
        await asyncio.wait_for(drain, 2)
    assert list(paho.sent.values()) == ["p/fits"]
    assert publisher.dropped == {"too_large": 2, "invalid": 1}
    assert (publisher.published, buffer.delivered, len(buffer)) == (1, 4, 0)
    drops = [r.getMessage() for r in caplog.records if "cannot take it" in r.getMessage()]
    assert len(drops) == 2  # once per reason and connection
    assert "maximum packet size is 100" in drops[0]


async def test_with_a_preset_what_the_platform_refuses_is_dropped_not_sent(
    buffer: DurableBuffer, caplog: pytest.LogCaptureFixture
) -> None:
    paho = FakePaho()
    publisher = Publisher(buffer, mqtt5=True, platform=PLATFORMS["aws-iot-core"])
    paho.publisher = publisher
    await buffer.append(
        [
            Message("p/a/b/c/d/e/f/g/h", b"{}", 1, False),  # 8 slashes: AWS allows 7
            Message("p/big", b"x" * (128 * 1024 + 1), 1, False),  # over AWS's 128 KB
            Message("p/fits", b"{}", 1, False),
        ]
    )
    with caplog.at_level(logging.ERROR, logger="gateway.mqtt.publisher"):
        drain = asyncio.create_task(publisher.drain(paho))  # type: ignore[arg-type]
        await wait_until(lambda: len(paho.sent) == 1)
        paho.ack(paho.mid_of("p/fits"))
        buffer.close_for_new()
        await asyncio.wait_for(drain, 2)
    assert list(paho.sent.values()) == ["p/fits"]
    assert publisher.dropped == {"too_large": 2, "invalid": 0}
    assert "AWS IoT Core allows 7" in caplog.text


async def test_a_paced_publisher_sends_no_faster_than_its_rate(buffer: DurableBuffer) -> None:
    paho = FakePaho()
    publisher = Publisher(buffer, mqtt5=True, pacer=Pacer(50))
    paho.publisher = publisher
    await buffer.append([Message(f"p/{n}", b"{}", 0, False) for n in range(30)])
    buffer.close_for_new()
    started = time.monotonic()
    await asyncio.wait_for(publisher.drain(paho), 5)  # type: ignore[arg-type]
    took = time.monotonic() - started
    assert publisher.published == 30
    # 2 at once (the burst), then one every 1/49 s.
    assert 28 / 49 * 0.95 <= took <= 28 / 49 + 0.3


async def test_a_refusal_by_the_broker_is_counted_and_not_sent_again(
    buffer: DurableBuffer, caplog: pytest.LogCaptureFixture
) -> None:
    paho = FakePaho()
    publisher = Publisher(buffer, mqtt5=True)
    paho.publisher = publisher
    await buffer.append(messages("a", "a"))
    drain = asyncio.create_task(publisher.drain(paho))  # type: ignore[arg-type]
    await wait_until(lambda: len(paho.sent) == 2)
    with caplog.at_level(logging.ERROR, logger="gateway.mqtt.publisher"):
        for mid in list(paho.sent):
            paho.ack(mid, ReasonCode(PacketTypes.PUBACK, "Not authorized"))
    buffer.close_for_new()
    await asyncio.wait_for(drain, 2)
    assert (publisher.refused, publisher.published, len(buffer)) == (2, 2, 0)
    assert len([r for r in caplog.records if "check its ACL" in r.getMessage()]) == 1


async def test_the_library_parts_the_adapter_relies_on_are_still_there() -> None:
    """The link and the publisher reach into aiomqtt 2 and paho 2 (see their module
    docstrings); an upgrade that removes those parts fails here, not in production."""
    assert version("aiomqtt").startswith("2.")
    assert version("paho-mqtt").startswith(("2.1.", "2.2."))
    client = aiomqtt.Client("localhost")
    paho = client._client
    assert isinstance(paho, mqtt_client.Client)
    for name in (
        "_packet_handle",
        "_handle_pubackcomp",
        "_in_packet",
        "_packet_read",
        "_sock_recv",
        "_loop_rc_handle",
        "_last_bytes_received",
        "loop_read",
        "_sock",
        "_mid_generate",
        "_packet_queue",
        "_send_pingreq",
        "_sock_close",
        "on_publish",
        "on_connect",
    ):
        assert hasattr(paho, name), name
    assert "packet" in paho._in_packet
    assert paho._in_packet["command"] == 0  # between two packets
    assert isinstance(client._disconnected, asyncio.Future)


async def test_a_format_finishes_each_message_as_it_is_sent_and_anew_after_a_dropped_link(
    buffer: DurableBuffer,
) -> None:
    """A format that numbers messages per connection stores them unfinished: what was in
    flight when the link dropped goes out again finished for the new connection, and the
    buffer keeps the stored form."""
    connection = 1

    def finish(message: Message) -> Message:
        return Message(f"{message.topic}/{connection}", message.payload, message.qos, False)

    publisher = Publisher(buffer, mqtt5=True, finish=finish)
    await buffer.append(messages("a", "b"))
    first = FakePaho(publisher)
    drain = asyncio.create_task(publisher.drain(first))  # type: ignore[arg-type]
    await wait_until(lambda: len(first.sent) == 2)
    first.ack(first.mid_of("p/a/1"))
    await wait_until(lambda: publisher.published == 1)
    drain.cancel()  # the link drops with p/b unacknowledged
    await asyncio.wait({drain})

    connection = 2
    second = FakePaho(publisher)
    drain = asyncio.create_task(publisher.drain(second))  # type: ignore[arg-type]
    try:
        await wait_until(lambda: len(second.sent) == 1)
        assert list(second.sent.values()) == ["p/b/2"]
    finally:
        drain.cancel()
        await asyncio.wait({drain})
    assert await taken_topics(buffer) == ["p/b"]
