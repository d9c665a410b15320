"""MQTT PUBLISH packets built by hand for the buffer's QoS 1 messages.

paho builds each PUBLISH with a message object, a condition variable, a lock and a debug
log line, and hands each to the socket on its own: at thousands of messages a second that
was most of the cost of sending. The publisher instead writes a run of QoS 1 messages as
one stretch of bytes, each packet laid out as MQTT 3.1.1 section 3.3 and MQTT 5 section
3.3 define it (no properties). Pure: no I/O.
"""

from __future__ import annotations

from functools import lru_cache

PUBLISH_QOS1 = 0x32
"""First byte of a PUBLISH with QoS 1, not a duplicate, not retained (bit 0 retains)."""

_FIRST = (bytes((PUBLISH_QOS1,)), bytes((PUBLISH_QOS1 | 1,)))
"""The first byte, by ``retain``."""


@lru_cache(maxsize=4096)  # a buffer's packets come in a few hundred sizes
def remaining_length(length: int) -> bytes:
    """The variable-length encoding of a packet's remaining length (7 bits a byte)."""
    out = bytearray()
    while True:
        byte, length = length & 0x7F, length >> 7
        out.append(byte | 0x80 if length else byte)
        if not length:
            return bytes(out)


def publish_qos1(topic: bytes, payload: bytes, mid: int, *, retain: bool, mqtt5: bool) -> bytes:
    """One PUBLISH packet at QoS 1 with packet identifier ``mid`` and no properties."""
    properties = b"\x00" if mqtt5 else b""
    length = 4 + len(topic) + len(properties) + len(payload)
    return b"".join(
        (
            _FIRST[retain],
            remaining_length(length),
            len(topic).to_bytes(2, "big"),
            topic,
            mid.to_bytes(2, "big"),
            properties,
            payload,
        )
    )
