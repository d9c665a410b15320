"""The PUBLISH packets the publisher builds itself are byte for byte what paho builds."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from paho.mqtt import client as mqtt_client
from paho.mqtt.enums import CallbackAPIVersion

from gateway.mqtt.packets import publish_qos1, remaining_length


def paho_packet(topic: bytes, payload: bytes, mid: int, *, retain: bool, mqtt5: bool) -> bytes:
    """The packet paho's own ``_send_publish`` queues for the same message."""
    protocol = mqtt_client.MQTTv5 if mqtt5 else mqtt_client.MQTTv311
    paho = mqtt_client.Client(CallbackAPIVersion.VERSION2, protocol=protocol)
    queued: list[bytes] = []

    def capture(command: int, packet: Any, *args: Any) -> int:
        queued.append(bytes(packet))
        return mqtt_client.MQTT_ERR_SUCCESS

    paho._sock = socket.socket()
    paho._packet_queue = capture  # type: ignore[method-assign,assignment]
    try:
        paho._send_publish(mid, topic, payload, 1, retain)
    finally:
        paho._sock_close()
    (packet,) = queued
    return packet


@pytest.mark.parametrize("mqtt5", [True, False])
@pytest.mark.parametrize("retain", [True, False])
@pytest.mark.parametrize("size", [0, 1, 100, 200, 16_500, 2_100_000])
def test_publish_packets_are_what_paho_builds(mqtt5: bool, retain: bool, size: int) -> None:
    topic = "wincc/tags/System1/Area1/Tank1/Level/ü".encode()
    payload = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    for mid in (1, 255, 256, 65_535):
        ours = publish_qos1(topic, payload, mid, retain=retain, mqtt5=mqtt5)
        assert ours == paho_packet(topic, payload, mid, retain=retain, mqtt5=mqtt5)


def test_remaining_length_uses_seven_bits_a_byte() -> None:
    assert remaining_length(0) == b"\x00"
    assert remaining_length(127) == b"\x7f"
    assert remaining_length(128) == b"\x80\x01"
    assert remaining_length(16_383) == b"\xff\x7f"
    assert remaining_length(16_384) == b"\x80\x80\x01"
    assert remaining_length(268_435_455) == b"\xff\xff\xff\x7f"
