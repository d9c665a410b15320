"""The rules of the cloud IoT platforms ``mqtt.preset`` names, from their documentation.

A platform closes the connection, throttles or drops messages when a client breaks its
rules; the gateway keeps within them instead: the settings refuse what a platform cannot
take, the publisher paces under its rate and drops (counted, logged) a message that could
never be delivered, rather than losing the connection over it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Preset = Literal["aws-iot-core", "azure-iot-hub"]


@dataclass(slots=True, frozen=True)
class Platform:
    """What one platform allows a single MQTT connection."""

    name: str
    max_qos: int
    protocols: tuple[int, ...]
    retain: bool
    rate: float
    """Default and (when ``rate_fixed``) highest publishes a second per connection."""
    rate_fixed: bool
    """True: the rate is the platform's per-connection ceiling; False: it depends on the
    plan the user pays for, so a higher one may be configured."""
    bytes_per_s: int | None
    max_payload: int
    max_topic_bytes: int | None
    max_topic_slashes: int | None
    reserved_prefix: str | None
    max_client_id: int | None
    max_keepalive: int
    sparkplug: bool
    connect_gap: float
    """Fewest seconds between two connection attempts of one client id."""


PLATFORMS: dict[str, Platform] = {
    "aws-iot-core": Platform(
        name="AWS IoT Core",
        max_qos=1,
        protocols=(5, 311),
        retain=True,
        rate=100.0,
        rate_fixed=True,
        bytes_per_s=512 * 1024,
        max_payload=128 * 1024,
        max_topic_bytes=256,
        max_topic_slashes=7,
        reserved_prefix="$aws/",
        max_client_id=128,
        max_keepalive=1200,
        sparkplug=True,
        connect_gap=1.0,
    ),
    "azure-iot-hub": Platform(
        name="Azure IoT Hub",
        max_qos=1,
        protocols=(311,),
        retain=False,
        rate=100.0,
        rate_fixed=False,
        bytes_per_s=None,
        max_payload=256 * 1024,
        max_topic_bytes=None,
        max_topic_slashes=None,
        reserved_prefix=None,
        max_client_id=None,
        max_keepalive=1177,
        sparkplug=False,
        connect_gap=0.0,
    ),
}

AWS_ALPN = "x-amzn-mqtt-ca"
"""ALPN protocol AWS IoT Core expects for MQTT with a client certificate on port 443."""

BATCH_HEADROOM = 1024
"""Bytes a batch stays below the payload limit (what wraps the samples)."""


def topic_problem(platform: Platform, topic: bytes) -> str | None:
    """Why ``platform`` would refuse a message on ``topic`` (UTF-8), or None."""
    if platform.max_topic_bytes is not None and len(topic) > platform.max_topic_bytes:
        return f"topic of {len(topic)} bytes, {platform.name} allows {platform.max_topic_bytes}"
    if platform.max_topic_slashes is not None:
        counted = topic
        reserved = (platform.reserved_prefix or "").encode()
        if reserved and counted.startswith(reserved):
            counted = counted[len(reserved) :]
        slashes = counted.count(b"/")
        if slashes > platform.max_topic_slashes:
            return (
                f"topic with {slashes} slashes, {platform.name} allows {platform.max_topic_slashes}"
            )
    return None


def payload_problem(platform: Platform, payload: bytes) -> str | None:
    """Why ``platform`` would refuse a message of this payload, or None."""
    if len(payload) > platform.max_payload:
        return f"payload of {len(payload)} bytes, {platform.name} allows {platform.max_payload}"
    return None
