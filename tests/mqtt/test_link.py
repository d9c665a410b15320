"""The link over a real mosquitto: plain PUBACKs of buffered messages are settled from
their bytes, and paho's own record of them is cleared, on MQTT 5 and 3.1.1 alike."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiomqtt
import pytest

from gateway.buffer.outbox import DurableBuffer
from gateway.buffer.store import Message
from gateway.mqtt.link import Link, settle_pubacks
from gateway.mqtt.publisher import Publisher
from tests.conftest import Mosquitto, subscribe

COUNT = 300


@pytest.mark.parametrize("protocol", [aiomqtt.ProtocolVersion.V5, aiomqtt.ProtocolVersion.V311])
async def test_plain_pubacks_are_settled_without_paho_and_everything_arrives(
    mosquitto: Mosquitto, tmp_path: Path, protocol: aiomqtt.ProtocolVersion
) -> None:
    buffer = DurableBuffer(tmp_path / "buffer.db", 10_000_000)
    await buffer.open()
    publisher = Publisher(buffer, mqtt5=protocol == aiomqtt.ProtocolVersion.V5)
    settled: list[bool] = []
    note_ack = publisher.note_ack

    def counted(mid: int, reason: int = 0) -> bool:
        settled.append(note_ack(mid, reason))
        return settled[-1]

    publisher.note_ack = counted  # type: ignore[method-assign]
    try:
        async with subscribe(mosquitto, "link/#", protocol=protocol) as sub:
            link = Link(aiomqtt.Client("127.0.0.1", mosquitto.port, protocol=protocol))
            paho = link.client._client
            packet_read = paho._packet_read
            read_by_paho: list[int] = []

            def counted_read() -> object:
                read_by_paho.append(1)
                return packet_read()

            paho._packet_read = counted_read
            async with link.client as client:
                await buffer.append(
                    [Message(f"link/{n}", str(n).encode(), 1, False) for n in range(COUNT)]
                )
                buffer.close_for_new()
                await asyncio.wait_for(link.publish(publisher), 15)
                await client.publish("link/own", b"aiomqtt's own", qos=1)  # paho's handler
                assert paho._out_messages == {}
                assert paho._inflight_messages == 0
            await sub.wait_for(lambda ms: len(ms) == COUNT + 1)
    finally:
        await buffer.close()
    assert settled.count(True) == COUNT  # every buffered message settled from its bytes
    # PUBACKs that arrived together were settled as a run, not read by paho one by one
    assert len(read_by_paho) < COUNT // 2, len(read_by_paho)
    assert publisher.published == buffer.delivered == COUNT
    assert sorted(int(m.payload) for m in sub.messages[:COUNT]) == list(range(COUNT))


def test_a_run_of_pubacks_is_settled_up_to_what_is_not_the_buffers() -> None:
    ids: list[tuple[int, int]] = []

    def settle(mid: int, reason: int) -> bool:
        ids.append((mid, reason))
        return mid != 9

    mqtt311 = bytes([0x40, 2, 0, 1])
    with_reason = bytes([0x40, 3, 0x01, 0x02, 0x10])  # MQTT 5, "no matching subscribers"
    with_properties = bytes([0x40, 8, 0, 3, 0x80, 4, 0x1F, 0, 1, 0x41])  # reason string "A"
    foreign = bytes([0x40, 2, 0, 9])
    data = b"xx" + mqtt311 + with_reason + with_properties + foreign + mqtt311
    end = settle_pubacks(data, 2, settle)
    assert ids == [(1, 0), (258, 0x10), (3, 0x80), (9, 0)]
    assert end == 2 + len(mqtt311 + with_reason + with_properties)  # paho reads the foreign one


@pytest.mark.parametrize(
    "data",
    [
        bytes([0x40, 2, 0]),  # cut by the end of what was read
        bytes([0x40, 3, 0, 1]),
        bytes([0x30, 2, 0, 1]),  # a PUBLISH
        bytes([0x40, 1, 0, 1]),  # too short to hold a packet id
        bytes([0x40, 0x80, 1, 0, 1]),  # a length of more than one byte
        b"",
    ],
)
def test_anything_but_a_whole_puback_is_left_to_paho(data: bytes) -> None:
    assert settle_pubacks(data, 0, lambda _mid, _reason: True) == 0
