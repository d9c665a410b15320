"""The SPEC's JSON topics: ``P/tags/<tag path>`` or ``P/batch/<group>``, ``P/alarms/...``,
the retained ``P/status``, and commands on ``P/cmd/write/...`` and ``P/cmd/ack/...``.

Two formats share everything but how samples go out: ``per-tag`` sends one message per
sample, ``batch`` one message per read of a group (split when it would grow too large).
Every message is finished when it is committed, so the buffer holds the bytes to send.
"""

from __future__ import annotations

from collections.abc import Callable

from gateway.buffer.store import Message
from gateway.core.alarms import AlarmDiff
from gateway.core.commands import (
    AckRequest,
    WriteRequest,
    parse_ack,
    parse_write,
    request_id_of,
)
from gateway.core.payloads import (
    alarm_event_payload,
    alarm_payload,
    batch_payloads,
    sample_payload,
    status_payload,
)
from gateway.core.timestamps import now_ms
from gateway.core.topics import TopicMap, escape_level
from gateway.errors import CommandRejected
from gateway.formats.base import Route, Sample, Status, Watched

OWN_TOPICS = ("tags", "alarms", "batch", "status", "cmd")
"""Levels under the prefix that are the gateway's own: its output and its commands."""


class JsonCommands:
    """Commands on ``P/cmd/write/<tag path>`` and ``P/cmd/ack/<alarm id>``, JSON payloads,
    answers on ``P/cmd/result`` unless the command names its own response topic."""

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix
        self._write = f"{prefix}/cmd/write/"
        self._ack = f"{prefix}/cmd/ack/"
        self._result = f"{prefix}/cmd/result"

    @property
    def filters(self) -> tuple[str, ...]:
        """Writes and acknowledgements."""
        return (f"{self._write}#", f"{self._ack}#")

    @property
    def result_topic(self) -> str:
        """``P/cmd/result``."""
        return self._result

    answers = True  # on the response topic, or on the result topic

    def route(self, topic: str) -> Route | None:
        """A write for the tag whose path follows ``cmd/write/``, or an acknowledgement
        of the alarm whose id follows ``cmd/ack/``."""
        if topic.startswith(self._write):
            return Route("tag", topic[len(self._write) :])
        if topic.startswith(self._ack):
            return Route("alarm", topic[len(self._ack) :])
        return None

    def split(self, route: Route, payload: bytes) -> list[tuple[Route, bytes]]:
        """One command per message."""
        return [(route, payload)]

    def control(self, target: str, payload: bytes) -> list[Message]:
        """Refused: these topics route no control commands."""
        raise CommandRejected("no control commands in this format")

    def owns(self, topic: str) -> bool:
        """Any topic at or below one of the prefix's own levels, but the result topic."""
        if topic == self._result:
            return False
        return any(
            topic == own or topic.startswith(own + "/")
            for own in (f"{self._prefix}/{level}" for level in OWN_TOPICS)
        )

    def reply_to(self, topic: str, outcome: str) -> str | None:
        """None: answers go to the response topic or the result topic."""
        return None

    def parse_write(self, payload: bytes) -> WriteRequest:
        """``{"value": V, "id": "...", "ts": TS}`` or a bare JSON value."""
        return parse_write(payload)

    def parse_ack(self, payload: bytes) -> AckRequest:
        """``{"id": "...", "comment": "..."}``, or an empty payload."""
        return parse_ack(payload)

    def request_id(self, payload: bytes) -> str | None:
        """The ``id`` field, when the payload is a JSON object that has a usable one."""
        return request_id_of(payload)


class PerTagJson:
    """One message per sample on ``P/tags/<tag path>``, retained as configured."""

    per_read = False
    watched: tuple[str, ...] = ()  # nothing but the commands
    holding = False  # the buffer goes out as soon as connected

    def __init__(
        self, *, prefix: str, qos: int, retain: bool, topic_map: TopicMap, version: str
    ) -> None:
        self._prefix = prefix
        self._qos = qos
        self._retain = retain
        self._topic_map = topic_map
        self._version = version
        self._status_topic = f"{prefix}/status"
        self._alarms = f"{prefix}/alarms/"
        self._commands = JsonCommands(prefix)

    @property
    def commands(self) -> JsonCommands:
        """JSON commands under ``P/cmd``."""
        return self._commands

    @property
    def finish(self) -> Callable[[Message], Message] | None:
        """None: the buffer holds finished messages."""
        return None

    def observe(self, topic: str, payload: bytes) -> Watched | None:
        """None: no topics are watched."""
        return None

    def samples(self, group: str, samples: list[Sample], *, backfill: bool) -> list[Message]:
        """``{"value", "quality", "good", "ts", "seq"}`` per sample, on its tag's topic."""
        prefix = self._prefix + "/tags/"
        path = self._topic_map.path
        qos, retain = self._qos, self._retain
        return [
            Message(
                prefix + path(reading.name),
                sample_payload(reading, seq, good=good, backfill=backfill),
                qos,
                retain,
            )
            for reading, seq, good in samples
        ]

    def alarms(self, diff: AlarmDiff) -> list[Message]:
        """Retained state per alarm on ``P/alarms/<id>`` (cleared when it is gone) and one
        message per transition on ``P/alarms/events``."""
        base, qos = self._alarms, self._qos
        messages = [
            Message(base + escape_level(alarm.id), alarm_payload(alarm), qos, True)
            for alarm in diff.changed
        ]
        messages += [Message(base + escape_level(gone), b"", qos, True) for gone in diff.cleared]
        messages += [
            Message(base + "events", alarm_event_payload(t.alarm, t.event, t.at_ms), qos, False)
            for t in diff.events
        ]
        return messages

    def catalog(self, groups: dict[str, list[str]]) -> list[Message]:
        """Nothing: every JSON message names its tag."""
        return []

    def will(self, since_ms: int) -> Message:
        """``P/status`` offline, retained, QoS 1."""
        return self._status(Status("offline", since_ms))

    def on_connect(self, status: Status) -> list[Message]:
        """``P/status`` online."""
        return [self._status(status)]

    def on_source(self, status: Status) -> list[Message]:
        """``P/status`` with the new source state."""
        return [self._status(status)]

    def on_tick(self, status: Status) -> list[Message]:
        """Nothing: the retained status says it all."""
        return []

    def on_leave(self, status: Status) -> Message:
        """``P/status`` offline."""
        return self._status(status)

    def _status(self, status: Status) -> Message:
        payload = status_payload(
            status.state, status.since_ms, version=self._version, source=status.source
        )
        return Message(self._status_topic, payload, 1, True)


class BatchJson(PerTagJson):
    """One message per read of a group on ``P/batch/<group>``, never retained, split into
    several when larger than ``max_bytes``."""

    per_read = True

    def __init__(
        self,
        *,
        prefix: str,
        qos: int,
        retain: bool,
        topic_map: TopicMap,
        version: str,
        max_bytes: int,
    ) -> None:
        super().__init__(
            prefix=prefix, qos=qos, retain=retain, topic_map=topic_map, version=version
        )
        self._max_bytes = max_bytes

    def samples(self, group: str, samples: list[Sample], *, backfill: bool) -> list[Message]:
        """``{"ts", "samples": [...]}`` for the read, in as many parts as its size needs."""
        topic = f"{self._prefix}/batch/{escape_level(group)}"
        return [
            Message(topic, payload, self._qos, False)
            for payload in batch_payloads(
                now_ms(), samples, max_bytes=self._max_bytes, backfill=backfill
            )
        ]
