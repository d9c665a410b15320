"""Azure IoT Hub's side of MQTT: the device's login, its topics, its SAS token.

IoT Hub takes MQTT 3.1.1 with the device id as client id, a user name naming the hub and
the API version, and as password a Shared Access Signature: an HMAC-SHA256 of the
device's resource URI and an expiry time, signed with the device key, which expires and
must be renewed. Telemetry goes only to the device's events topic, with message
properties in the topic; direct methods arrive on ``$iothub/methods/POST/<name>/?$rid=<id>``
and are answered on ``$iothub/methods/res/<status>/?$rid=<id>``. Pure: no I/O, no clock.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from urllib.parse import parse_qsl, quote

API_VERSION = "2021-04-12"
DEFAULT_DOMAIN = ".azure-devices.net"
METHODS_FILTER = "$iothub/methods/POST/#"
_METHOD_PREFIX = "$iothub/methods/POST/"

JSON_PROPERTIES = (("$.ct", "application/json;charset=utf-8"), ("$.ce", "utf-8"))
"""System properties that let hub routing read the JSON body."""


def hub_host(hub: str) -> str:
    """The hub's host name: a bare name gets ``.azure-devices.net``."""
    return hub if "." in hub else hub + DEFAULT_DOMAIN


def username(hub: str, device_id: str) -> str:
    """``{hub host}/{device id}/?api-version=...``."""
    return f"{hub_host(hub)}/{device_id}/?api-version={API_VERSION}"


def resource_uri(hub: str, device_id: str) -> str:
    """The resource a device's SAS token grants access to."""
    return f"{hub_host(hub)}/devices/{device_id}"


def decode_key(key: str) -> bytes:
    """The device key as bytes; raises ValueError when it is not base64 (the portal
    shows it base64-encoded)."""
    try:
        decoded = base64.b64decode(key.strip(), validate=True)
    except binascii.Error as exc:
        raise ValueError("the device key is not base64 (copy the primary key)") from exc
    if not decoded:
        raise ValueError("the device key is empty")
    return decoded


def sas_token(resource: str, key: bytes, expiry: int) -> str:
    """``SharedAccessSignature sr=...&sig=...&se=...`` valid until ``expiry`` (epoch s)."""
    encoded = quote(resource, safe="")
    signed = hmac.new(key, f"{encoded}\n{expiry}".encode(), hashlib.sha256).digest()
    signature = quote(base64.b64encode(signed).decode(), safe="")
    return f"SharedAccessSignature sr={encoded}&sig={signature}&se={expiry}"


def property_bag(properties: tuple[tuple[str, str], ...]) -> str:
    """Message properties as IoT Hub reads them from a topic: URL-encoded ``k=v&...``."""
    return "&".join(f"{quote(key, safe='$.')}={quote(value, safe='')}" for key, value in properties)


def events_topic(device_id: str, properties: tuple[tuple[str, str], ...]) -> str:
    """The device's telemetry topic carrying ``properties``."""
    return f"devices/{device_id}/messages/events/{property_bag(properties)}"


def method_call(topic: str) -> tuple[str, str] | None:
    """``(method name, request id)`` of a direct method request topic, or None."""
    if not topic.startswith(_METHOD_PREFIX):
        return None
    name, sep, query = topic[len(_METHOD_PREFIX) :].partition("/?")
    if not sep or not name or "/" in name:
        return None
    rid = dict(parse_qsl(query)).get("$rid")
    return (name, rid) if rid else None


def method_response_topic(status: int, request_id: str) -> str:
    """Where the answer to a direct method goes, with its status."""
    return f"$iothub/methods/res/{status}/?$rid={quote(request_id, safe='')}"
