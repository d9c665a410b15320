"""Sparkplug B 3.0 edge node: the gateway is one node of a Sparkplug group, and WinCC's
tags are the metrics of its devices (one device per WinCC connection, or per poll group).

Topics are ``spBv1.0/<group>/<type>/<edge node>[/<device>]``. On every connection the
node's death certificate (NDEATH, QoS 1, not retained) is the will, with a ``bdSeq`` one
higher than the last connection's (kept across restarts); then NBIRTH, with the same
``bdSeq``, and one DBIRTH per device declaring every metric with its name, alias,
datatype and current value. A read becomes one DDATA per device, by alias only. Births
and data are QoS 0 and not retained. Every message of the node but NDEATH carries a
``seq``: 0 in NBIRTH, then one more per message, 255 wrapping to 0. The buffer stores
data without it; ``finish`` numbers each message as it is sent, and marks data from an
earlier connection (or from the WinCC archive) historical. While WinCC is unreachable the
devices are dead (DDEATH) and born again (DBIRTH) when it is back. The node's own
metrics say the state of the WinCC link and the buffer depth.

With a primary host (``host_id``) the node watches the host's STATE: no births, and the
buffered data waits, until the host says online on the connection; when it says offline
the node leaves (NDEATH) and connects again (``gateway.formats.sparkplug_host``).

Not published in this format: alarms. Commands (NCMD rebirth, DCMD writes) are in
``gateway.formats.sparkplug_commands``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from gateway.buffer.store import Message
from gateway.core.alarms import AlarmDiff
from gateway.core.models import TagType, Value
from gateway.core.payloads import compact_json
from gateway.core.timestamps import now_ms
from gateway.core.topics import TopicMap
from gateway.formats import sparkplug_codec as codec
from gateway.formats.base import Current, Sample, Status, Watched
from gateway.formats.sparkplug_commands import NAMESPACE, REBIRTH, SparkplugCommands
from gateway.formats.sparkplug_host import PrimaryHost
from gateway.formats.sparkplug_state import SparkplugState

log = logging.getLogger(__name__)

SOURCE_METRIC = "Gateway/WinCC"
"""Node metric: the state of the WinCC link, ``up``, ``down`` or ``unknown``."""
BUFFER_METRIC = "Gateway/Buffer Depth"
"""Node metric: the messages the store-and-forward buffer holds (UInt64), sent in NDATA
when it changed since it was last said (at most every few seconds)."""
QUALITY = "Quality"
WINCC_QUALITY = "WinCC Quality"

DATATYPES = {
    TagType.FLOAT: codec.DOUBLE,
    TagType.INT: codec.INT64,
    TagType.BOOL: codec.BOOLEAN,
    TagType.STRING: codec.STRING,
}
"""WinCC tag types as Sparkplug datatypes; any other type is sent as a String of JSON."""


def sparkplug_quality(code: int) -> int:
    """The Sparkplug quality of a WinCC quality byte: 0 bad, 500 stale (uncertain), 192
    good (its two main bits)."""
    main = (code >> 6) & 3
    return 0 if main == 0 else 500 if main == 1 else 192


def connection_device(wincc_url: str) -> str:
    """The device id of the WinCC connection: the server's host name."""
    return urlsplit(wincc_url).hostname or "wincc"


class SparkplugNode:
    """The Sparkplug B output format: one edge node and its devices."""

    per_read = True  # one DDATA per read and device

    def __init__(
        self,
        *,
        group_id: str,
        edge_node_id: str,
        device: str | None,
        state: SparkplugState,
        topic_map: TopicMap,
        tag_types: Mapping[str, TagType],
        current: Callable[[str], Current | None],
        result_topic: str,
        host_id: str | None = None,
    ) -> None:
        self._base = f"{NAMESPACE}/{group_id}"
        self._group_id = group_id
        self._node = edge_node_id
        self._device = device  # the one device of the connection; None: one per group
        self._state = state
        self._topic_map = topic_map
        self._tag_types = tag_types
        self._current = current
        self._commands = SparkplugCommands(
            group_id=group_id,
            edge_node_id=edge_node_id,
            state=state,
            topic_map=topic_map,
            births=self._births,
            result_topic=result_topic,
        )
        self._bd_seq = state.bd_seq or 0
        self._seq = 0
        self._connected_ms = 0  # when the current connection was made
        self._source = "unknown"
        self._source_alias = state.node_alias(SOURCE_METRIC)
        self._buffered = 0  # the buffer depth as last said
        self._buffer_alias = state.node_alias(BUFFER_METRIC)
        self._alarms_said = False
        self._host = PrimaryHost(NAMESPACE, host_id) if host_id is not None else None

    @property
    def commands(self) -> SparkplugCommands:
        """NCMD rebirth and DCMD writes."""
        return self._commands

    @property
    def finish(self) -> Callable[[Message], Message]:
        """Numbers each message as it is sent, and marks older data historical."""
        return self._finish

    @property
    def watched(self) -> tuple[str, ...]:
        """The primary host's STATE, when there is one."""
        return () if self._host is None else (self._host.topic,)

    @property
    def holding(self) -> bool:
        """True while a primary host is configured and not online on this connection."""
        return self._host is not None and not self._host.online

    def observe(self, topic: str, payload: bytes) -> Watched | None:
        """The primary host's STATE: online gives birth (data made before then goes out
        historical), offline makes the node leave; None for any other topic."""
        if self._host is None or topic != self._host.topic:
            return None
        verdict = self._host.observe(payload)
        if verdict == "online":
            self._connected_ms = now_ms()
            return Watched(self._births())
        return Watched(leave=verdict == "offline")

    def _topic(self, kind: str, device: str | None = None) -> str:
        topic = f"{self._base}/{kind}/{self._node}"
        return topic if device is None else f"{topic}/{device}"

    def _device_of(self, group: str) -> str:
        return self._device if self._device is not None else group

    # --- what the buffer stores ------------------------------------------------------------

    def samples(self, group: str, samples: list[Sample], *, backfill: bool) -> list[Message]:
        """One DDATA for the read: by alias, each metric with its source timestamp, a
        not-good one with its quality; historical when it comes from the archive."""
        metrics = self._state.metrics
        encode = codec.metric
        parts = []
        for reading, _, good in samples:
            known = metrics.get(reading.name)
            if known is None:  # not in the catalog: no alias a host could know
                continue
            alias, datatype = known
            parts.append(
                encode(
                    datatype=datatype,
                    value=_fit(datatype, reading.value),
                    timestamp=reading.ts_ms,
                    alias=alias,
                    with_datatype=False,
                    historical=backfill,
                    properties=None if good else _quality(reading.quality),
                )
            )
        if not parts:
            return []
        topic = self._topic("DDATA", self._device_of(group))
        return [Message(topic, codec.payload(now_ms(), parts), 0, False)]

    def alarms(self, diff: AlarmDiff) -> list[Message]:
        """Nothing: alarms are not published in this format (said once, when the first
        change is seen, so that an operator knows where they did not go)."""
        if not self._alarms_said and (diff.changed or diff.events):
            self._alarms_said = True
            log.warning(
                "alarms are not published with mqtt.payload = sparkplug; set alarms.enabled "
                "= false to stop polling them"
            )
        return []

    def catalog(self, groups: dict[str, list[str]]) -> list[Message]:
        """Record the devices and their metrics (new tags get new aliases, kept for good);
        births to publish when anything changed, nothing otherwise."""
        if self._device is not None:
            devices = {self._device: [name for names in groups.values() for name in names]}
        else:
            devices = {group: list(names) for group, names in groups.items() if names}
        types = {
            name: DATATYPES.get(self._tag_types.get(name, TagType.UNKNOWN), codec.STRING)
            for names in devices.values()
            for name in names
        }
        changed = self._state.add_metrics(types)
        if not changed and devices == self._state.devices:
            return []
        self._state.devices = devices
        self._state.save()
        return self._births()

    # --- the connection ---------------------------------------------------------------------

    def will(self, since_ms: int) -> Message:
        """NDEATH with this connection's new bdSeq, QoS 1, not retained."""
        self._bd_seq = self._state.next_bd_seq()
        return self._death()

    def on_connect(self, status: Status) -> list[Message]:
        """NBIRTH, then a DBIRTH per device (and their DDEATH while WinCC is down); data
        made before now goes out historical."""
        self._connected_ms = now_ms()
        self._source = status.source or "unknown"
        self._buffered = status.buffered
        if self._host is not None:
            self._host.reset()
        return self._births()

    def on_source(self, status: Status) -> list[Message]:
        """The WinCC link on the node, and every device dead (down) or born again (up
        after down)."""
        was, self._source = self._source, status.source or "unknown"
        self._buffered = status.buffered
        if self.holding:  # the births, when the host is there, say it all
            return []
        now = now_ms()
        messages = [self._node_data(now, source=True)]
        devices = list(self._state.devices)
        if self._source == "down":
            messages += [self._device_death(device, now) for device in devices]
        elif self._source == "up" and was == "down":
            messages += [self._device_birth(device, now) for device in devices]
        return messages

    def on_tick(self, status: Status) -> list[Message]:
        """NDATA with the buffer depth when it changed since it was last said."""
        if self.holding or status.buffered == self._buffered:
            return []
        self._buffered = status.buffered
        return [self._node_data(now_ms(), source=False)]

    def on_leave(self, status: Status) -> Message:
        """NDEATH with the connection's bdSeq, before a clean disconnect."""
        return self._death()

    def _finish(self, message: Message) -> Message:
        """The message with its seq (NBIRTH 0, then one more each, NDEATH none); data
        made before this connection flagged historical. A message that is not this
        node's (left in the buffer by another format or node id) goes as it is."""
        levels = message.topic.split("/", 4)
        if len(levels) < 4 or levels[3] != self._node or levels[1] != self._group_id:
            return message
        kind = levels[2]
        if kind == "NDEATH":
            return message
        self._seq = 0 if kind == "NBIRTH" else (self._seq + 1) % 256
        body = message.payload
        if kind == "DDATA":
            try:
                if codec.created_ms(body) < self._connected_ms:
                    body = codec.as_historical(body)
            except (ValueError, IndexError):  # not written by this gateway: sent unmarked
                log.warning("DDATA on %s is not a payload of this gateway", message.topic[:200])
        return Message(message.topic, codec.with_seq(body, self._seq), message.qos, message.retain)

    # --- births and deaths ----------------------------------------------------------------

    def _births(self) -> list[Message]:
        """NBIRTH and every DBIRTH (DDEATH too while WinCC is down); none while holding."""
        if self.holding:
            return []
        now = now_ms()
        messages = [self._node_birth(now)]
        messages += [self._device_birth(device, now) for device in self._state.devices]
        if self._source == "down":
            messages += [self._device_death(device, now) for device in self._state.devices]
        return messages

    def _death(self) -> Message:
        now = now_ms()
        bd_seq = codec.metric(name="bdSeq", datatype=codec.INT64, value=self._bd_seq, timestamp=now)
        return Message(self._topic("NDEATH"), codec.payload(now, [bd_seq]), 1, False)

    def _node_birth(self, now: int) -> Message:
        metrics = [
            codec.metric(name="bdSeq", datatype=codec.INT64, value=self._bd_seq, timestamp=now),
            codec.metric(name=REBIRTH, datatype=codec.BOOLEAN, value=False, timestamp=now),
            *self._own_metrics(now, born=True),
        ]
        return Message(self._topic("NBIRTH"), codec.payload(now, metrics), 0, False)

    def _node_data(self, now: int, *, source: bool) -> Message:
        """NDATA with the buffer depth, and the WinCC link when ``source``."""
        metrics = self._own_metrics(now, born=False, source=source)
        return Message(self._topic("NDATA"), codec.payload(now, metrics), 0, False)

    def _own_metrics(self, now: int, *, born: bool, source: bool = True) -> list[bytes]:
        """The gateway's own metrics, the WinCC link (when ``source``) and the buffer
        depth: named and typed in the birth, by alias only in data."""
        own: list[tuple[str, int, int, Value]] = [
            (BUFFER_METRIC, self._buffer_alias, codec.UINT64, self._buffered)
        ]
        if source:
            own.insert(0, (SOURCE_METRIC, self._source_alias, codec.STRING, self._source))
        return [
            codec.metric(
                name=name if born else None,
                alias=alias,
                datatype=datatype,
                value=value,
                timestamp=now,
                with_datatype=born,
            )
            for name, alias, datatype, value in own
        ]

    def _device_birth(self, device: str, now: int) -> Message:
        """Every metric of the device: name, alias, datatype, current value (or null)."""
        metrics = self._state.metrics
        path = self._topic_map.path
        parts = []
        for name in self._state.devices.get(device, []):
            known = metrics.get(name)
            if known is None:  # a state file edited by hand
                continue
            alias, datatype = known
            current = self._current(name)
            value, quality, good = current if current is not None else (None, 0, True)
            parts.append(
                codec.metric(
                    name=path(name),
                    alias=alias,
                    datatype=datatype,
                    value=_fit(datatype, value),
                    timestamp=now,
                    properties=None if good else _quality(quality),
                )
            )
        return Message(self._topic("DBIRTH", device), codec.payload(now, parts), 0, False)

    def _device_death(self, device: str, now: int) -> Message:
        return Message(self._topic("DDEATH", device), codec.payload(now, []), 0, False)


def _fit(datatype: int, value: Value) -> Value:
    """A value of a tag of unknown type as the String it is sent as: its JSON text."""
    if datatype != codec.STRING or value is None or isinstance(value, str):
        return value
    return compact_json(value).decode()


def _quality(code: int) -> bytes:
    """The properties of a not-good metric: its Sparkplug quality and WinCC's byte."""
    return codec.property_set(
        [(QUALITY, codec.INT32, sparkplug_quality(code)), (WINCC_QUALITY, codec.INT32, code)]
    )
