"""Azure IoT Hub: the JSON formats' messages as device telemetry, commands as direct methods.

IoT Hub takes telemetry only on ``devices/<id>/messages/events/<properties>`` and keeps
nothing retained. Every message of the per-tag or batch JSON format (samples, alarms,
the status, the will) goes there with its body unchanged, and with properties hub routing
can use: the JSON content type, ``topic`` (where the message would go on a plain broker,
below the prefix: ``tags/Line1/Temp``, ``batch/fast``, ``status``, ``alarms/events``)
and, for a tag's sample, ``tag`` (the tag's name).

Commands are the direct methods ``write`` (``{"tag", "value", "id"?, "ts"?}``) and ``ack``
(``{"alarm", "comment"?, "id"?}``), judged by the same command policy as every command;
the answer is the method's response: 200 with the usual answer body, 400 when refused,
500 when the outcome is unknown.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from gateway.buffer.store import Message
from gateway.core.alarms import AlarmDiff
from gateway.core.azure import (
    JSON_PROPERTIES,
    METHODS_FILTER,
    events_topic,
    method_call,
    method_response_topic,
)
from gateway.core.commands import (
    MAX_PAYLOAD,
    AckRequest,
    WriteRequest,
    parse_ack,
    parse_write,
    request_id_of,
)
from gateway.core.payloads import compact_json
from gateway.core.topics import TopicMap, escape_level, tag_path
from gateway.errors import CommandRejected
from gateway.formats.base import OutputFormat, Route, Sample, Status, Watched

STATUS_CODES = {"ok": 200, "refused": 400, "unknown": 500}
"""Direct method status per command outcome."""


class AzureMethods:
    """Commands as the direct methods ``write`` and ``ack``, answered as their responses."""

    filters = (METHODS_FILTER,)
    answers = True
    result_topic = "$iothub/methods/res"
    """Only named in messages: each method is answered on its own response topic."""

    def __init__(self, topic_map: TopicMap) -> None:
        self._topic_map = topic_map

    def route(self, topic: str) -> Route | None:
        """``write`` and ``ack`` go to WinCC (their target is in the body); any other
        method is a control, refused as unknown."""
        call = method_call(topic)
        if call is None:
            return None
        name = call[0]
        if name == "write":
            return Route("tag", "")
        if name == "ack":
            return Route("alarm", "")
        return Route("control", name[:100])

    def split(self, route: Route, payload: bytes) -> list[tuple[Route, bytes]]:
        """The method's body as the command the policy judges: the target from the body,
        the rest as the JSON commands' payload."""
        if route.kind == "control":
            return [(route, payload)]
        body = _object(payload)
        fields: dict[str, Any] = {key: body[key] for key in ("id", "ts") if key in body}
        if route.kind == "tag":
            tag = body.pop("tag", None)
            if not isinstance(tag, str) or not tag:
                raise CommandRejected('"tag": the name of the tag to write')
            fields["value"] = body.get("value")
            if "value" not in body:
                raise CommandRejected('missing "value"')
            unknown = sorted(set(body) - {"value", "id", "ts"})
            target = tag_path(tag)  # a tag the gateway does not read maps to none
        else:
            alarm = body.pop("alarm", None)
            if not isinstance(alarm, str) or not alarm:
                raise CommandRejected('"alarm": the id of the alarm to acknowledge')
            if "comment" in body:
                fields["comment"] = body["comment"]
            unknown = sorted(set(body) - {"comment", "id", "ts"})
            target = escape_level(alarm)
        if unknown:
            raise CommandRejected(f"unknown field(s) {', '.join(map(repr, unknown))[:200]}")
        return [(Route(route.kind, target), compact_json(fields))]

    def control(self, target: str, payload: bytes) -> list[Message]:
        """Refused: only ``write`` and ``ack`` are offered."""
        raise CommandRejected(f"unknown method {target!r}: this device offers write and ack")

    def owns(self, topic: str) -> bool:
        """The device's and the hub's topics."""
        return topic.startswith(("devices/", "$iothub/"))

    def reply_to(self, topic: str, outcome: str) -> str | None:
        """The method's response topic, with the status of the outcome."""
        call = method_call(topic)
        return None if call is None else method_response_topic(STATUS_CODES[outcome], call[1])

    def parse_write(self, payload: bytes) -> WriteRequest:
        """The payload ``split`` made."""
        return parse_write(payload)

    def parse_ack(self, payload: bytes) -> AckRequest:
        """The payload ``split`` made."""
        return parse_ack(payload)

    def request_id(self, payload: bytes) -> str | None:
        """The body's ``id``, when it has a usable one."""
        return request_id_of(payload)


def _object(payload: bytes) -> dict[str, Any]:
    if len(payload) > MAX_PAYLOAD:
        raise CommandRejected(f"payload too large ({len(payload)} bytes, at most {MAX_PAYLOAD})")
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise CommandRejected(f"malformed JSON: {exc.msg}") from exc
    if not isinstance(body, dict):
        raise CommandRejected("the method's payload is a JSON object")
    return body


class AzureTelemetry:
    """A JSON format (per-tag or batch) whose messages go out as the device's telemetry."""

    watched: tuple[str, ...] = ()
    holding = False

    def __init__(self, inner: OutputFormat, *, prefix: str, device_id: str, topic_map: TopicMap):
        self._inner = inner
        self._strip = len(prefix) + 1
        self._device_id = device_id
        self._topic_map = topic_map
        self._commands = AzureMethods(topic_map)

    @property
    def per_read(self) -> bool:
        """As the JSON format."""
        return self._inner.per_read

    @property
    def commands(self) -> AzureMethods:
        """Direct methods."""
        return self._commands

    @property
    def finish(self) -> Callable[[Message], Message] | None:
        """None: the buffer holds finished messages."""
        return None

    def _telemetry(self, message: Message) -> Message:
        relative = message.topic[self._strip :]
        properties: tuple[tuple[str, str], ...] = (*JSON_PROPERTIES, ("topic", relative))
        if relative.startswith("tags/"):
            tag = self._topic_map.tag(relative[5:])
            if tag is not None:
                properties = (*properties, ("tag", tag))
        topic = events_topic(self._device_id, properties)
        return Message(topic, message.payload, min(message.qos, 1), False)

    def _all(self, messages: list[Message]) -> list[Message]:
        return [self._telemetry(message) for message in messages]

    def samples(self, group: str, samples: list[Sample], *, backfill: bool) -> list[Message]:
        """The JSON format's messages, as telemetry."""
        return self._all(self._inner.samples(group, samples, backfill=backfill))

    def alarms(self, diff: AlarmDiff) -> list[Message]:
        """The JSON format's alarm messages (states and events), as telemetry."""
        return self._all(self._inner.alarms(diff))

    def observe(self, topic: str, payload: bytes) -> Watched | None:
        """None: no topics are watched."""
        return None

    def catalog(self, groups: dict[str, list[str]]) -> list[Message]:
        """As the JSON format (nothing)."""
        return self._all(self._inner.catalog(groups))

    def will(self, since_ms: int) -> Message:
        """The status offline, as telemetry (IoT Hub sends a will as telemetry)."""
        return self._telemetry(self._inner.will(since_ms))

    def on_connect(self, status: Status) -> list[Message]:
        """The status online, as telemetry."""
        return self._all(self._inner.on_connect(status))

    def on_source(self, status: Status) -> list[Message]:
        """The status with the new source state, as telemetry."""
        return self._all(self._inner.on_source(status))

    def on_tick(self, status: Status) -> list[Message]:
        """The wrapped format's periodic report, as telemetry."""
        return self._all(self._inner.on_tick(status))

    def on_leave(self, status: Status) -> Message:
        """The status offline, as telemetry."""
        return self._telemetry(self._inner.on_leave(status))
