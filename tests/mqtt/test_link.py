"""The link over a real mosquitto: plain PUBACKs of buffered messages are settled from
their bytes, and paho's own record of them is cleared, on MQTT 5 and 3.1.1 alike."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiomqtt
import pytest

from gateway.buffer.outbox import DurableBuffer
from gateway.buffer.store import Message
from gateway.mqtt.link import Link
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
    settle = publisher.settle

    def counted(mid: int, reason: int = 0) -> bool:
        settled.append(settle(mid, reason))
        return settled[-1]

    publisher.settle = counted  # type: ignore[method-assign]
    try:
        async with subscribe(mosquitto, "link/#", protocol=protocol) as sub:
            link = Link(aiomqtt.Client("127.0.0.1", mosquitto.port, protocol=protocol))
            async with link.client as client:
                await buffer.append(
                    [Message(f"link/{n}", str(n).encode(), 1, False) for n in range(COUNT)]
                )
                buffer.close_for_new()
                await asyncio.wait_for(link.publish(publisher), 15)
                await client.publish("link/own", b"aiomqtt's own", qos=1)  # paho's handler
                paho = link.client._client
                assert paho._out_messages == {}
                assert paho._inflight_messages == 0
            await sub.wait_for(lambda ms: len(ms) == COUNT + 1)
    finally:
        await buffer.close()
    assert settled.count(True) == COUNT  # every buffered message settled from its bytes
    assert publisher.published == buffer.delivered == COUNT
    assert sorted(int(m.payload) for m in sub.messages[:COUNT]) == list(range(COUNT))
