"""The command side of a Sparkplug B edge node: NCMD to the node, DCMD to its devices.

An NCMD ``Node Control/Rebirth = true`` is a control of the format: the node publishes
its NBIRTH (same bdSeq, seq 0) and every DBIRTH again, while the buffered data waits.
A DCMD carries metric writes, addressed by alias or by name; each metric is one write,
judged by the same command policy as any other (allow-list, type, range, age by the
metric's timestamp, or the payload's, and rate). Sparkplug has no replies: the result of
a write is the tag's next DDATA (its value read back) and the audit line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from gateway.buffer.store import Message
from gateway.core.commands import AckRequest, WriteRequest
from gateway.core.topics import TopicMap
from gateway.errors import CommandRejected
from gateway.formats import sparkplug_codec as codec
from gateway.formats.base import Route
from gateway.formats.sparkplug_state import SparkplugState

log = logging.getLogger(__name__)

NAMESPACE = "spBv1.0"
REBIRTH = "Node Control/Rebirth"
NODE_CONTROL = "node"
"""The route target of an NCMD, before its metrics are split out."""
MAX_PAYLOAD = 64 * 1024
"""A command payload larger than this is refused unread."""


class SparkplugCommands:
    """NCMD (rebirth) and DCMD (metric writes) of one edge node."""

    def __init__(
        self,
        *,
        group_id: str,
        edge_node_id: str,
        state: SparkplugState,
        topic_map: TopicMap,
        births: Callable[[], list[Message]],
        result_topic: str,
    ) -> None:
        base = f"{NAMESPACE}/{group_id}"
        self._ncmd = f"{base}/NCMD/{edge_node_id}"
        self._dcmd = f"{base}/DCMD/{edge_node_id}/"
        self._node_level = edge_node_id
        self._group = base + "/"
        self._state = state
        self._topic_map = topic_map
        self._births = births
        self._result = result_topic

    @property
    def filters(self) -> tuple[str, ...]:
        """The node's NCMD and every DCMD of its devices."""
        return (self._ncmd, self._dcmd + "+")

    @property
    def result_topic(self) -> str:
        """Never used: Sparkplug commands are not answered on MQTT."""
        return self._result

    answers = False  # Sparkplug has no reply topic

    def route(self, topic: str) -> Route | None:
        """An NCMD is a control of the node; a DCMD writes tags of the device it names."""
        if topic == self._ncmd:
            return Route("control", NODE_CONTROL)
        if topic.startswith(self._dcmd):
            device = topic[len(self._dcmd) :]
            return Route("tag", device) if device and "/" not in device else None
        return None

    def split(self, route: Route, payload: bytes) -> list[tuple[Route, bytes]]:
        """One command per metric. Each metric is made whole for ``parse_write``: the
        datatype the birth declared and the payload's timestamp are added when it carries
        none. A DCMD metric that is not one of the device's is routed to no tag (refused
        as unknown)."""
        if len(payload) > MAX_PAYLOAD:
            raise CommandRejected(f"payload too large ({len(payload)} bytes)")
        try:
            stamp, metrics = codec.metrics_of(payload)
            read = [codec.read_metric(m, lambda name, alias: None) for m in metrics]
        except (ValueError, IndexError, UnicodeDecodeError) as exc:
            raise CommandRejected(f"not a Sparkplug B payload: {exc}") from exc
        if not metrics:
            raise CommandRejected("the payload carries no metric")
        if route.kind == "control":
            return [
                (Route("control", m.name or f"alias {m.alias}"), self._whole(raw, m, None, stamp))
                for raw, m in zip(metrics, read, strict=True)
            ]
        tags = self._state.devices.get(route.target, [])
        by_alias = {self._state.metrics[tag][0]: tag for tag in tags if tag in self._state.metrics}
        by_name = {self._topic_map.path(tag): tag for tag in tags}
        commands = []
        for raw, m in zip(metrics, read, strict=True):
            tag = by_alias.get(m.alias) if m.alias is not None else by_name.get(m.name or "")
            if tag is None:  # not a metric of this device: no tag of that path
                target = m.name or f"alias {m.alias}"
                commands.append((Route("tag", f"{route.target}: {target}"), raw))
                continue
            known = self._state.metrics.get(tag)
            declared = known[1] if known is not None else None
            commands.append(
                (Route("tag", self._topic_map.path(tag)), self._whole(raw, m, declared, stamp))
            )
        return commands

    @staticmethod
    def _whole(
        raw: bytes, read: codec.ReadMetric, declared: int | None, stamp: int | None
    ) -> bytes:
        """The metric with the datatype and timestamp it lacks appended (the last
        occurrence of a protobuf field wins, so appending never overrides the sender's:
        only absent fields are added)."""
        if read.datatype is None and declared is not None:
            raw += b"\x20" + codec.varint(declared)
        if read.timestamp is None and stamp is not None:
            raw += b"\x18" + codec.varint(stamp)
        return raw

    def control(self, target: str, payload: bytes) -> list[Message]:
        """``Node Control/Rebirth = true``: the births again; anything else is refused."""
        if target != REBIRTH:
            raise CommandRejected(f"unknown node control {target[:100]!r}")
        if _value(payload) is not True:
            raise CommandRejected(f"{REBIRTH} must be true")
        return self._births()

    def owns(self, topic: str) -> bool:
        """Every topic of this node (``spBv1.0/<group>/<type>/<node>[/...]``)."""
        if not topic.startswith(self._group):
            return False
        levels = topic[len(self._group) :].split("/")
        return len(levels) >= 2 and levels[1] == self._node_level

    def reply_to(self, topic: str, outcome: str) -> str | None:
        """None: Sparkplug commands get no answers."""
        return None

    def parse_write(self, payload: bytes) -> WriteRequest:
        """One metric of a DCMD, made whole by ``split``: its value, and its timestamp for
        the age check."""
        read = _read(payload)
        if read.value is None:
            raise CommandRejected("no value: a null or a metric of unknown datatype")
        return WriteRequest(read.value, None, read.timestamp)

    def parse_ack(self, payload: bytes) -> AckRequest:
        """Refused: Sparkplug has no alarm acknowledgement."""
        raise CommandRejected("Sparkplug has no alarm acknowledgement")

    def request_id(self, payload: bytes) -> str | None:
        """None: Sparkplug commands carry no request id."""
        return None


def _read(metric: bytes) -> codec.ReadMetric:
    try:
        return codec.read_metric(metric, lambda name, alias: None)
    except (ValueError, IndexError, UnicodeDecodeError) as exc:
        raise CommandRejected(f"malformed metric: {exc}") from exc


def _value(metric: bytes) -> object:
    """A node control metric's value; a Boolean when it names no datatype."""
    try:
        return codec.read_metric(metric, lambda name, alias: codec.BOOLEAN).value
    except (ValueError, IndexError, UnicodeDecodeError) as exc:
        raise CommandRejected(f"malformed metric: {exc}") from exc
