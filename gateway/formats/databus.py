"""Siemens Industrial Edge Databus (Common Databus JSON, ``simatic/v1``): the gateway is
one connector app instance; its WinCC connection is a connection, each poll group a
collection, each tag a datapoint with a stable id.

Topics, for app instance ``A``:

- ``ie/m/j/simatic/v1/A/dp``: the metadata (connections -> collections -> datapoints
  ``{name, id, dataType}``), retained, on every connect and when the tag lists change, so
  that a consumer knows every id before values of it arrive.
- ``ie/d/j/simatic/v1/A/dp/r/<connection>/<collection>``: one message per read of a group,
  ``{"seq": n, "vals": [{"id", "val", "ts", "qc", "qx"}]}``; ``qc`` 0 bad, 1 uncertain,
  3 good (WinCC's quality byte's two main bits), ``qx`` the WinCC quality byte itself;
  64-bit integers as strings (JavaScript consumers lose precision beyond 2**53).
- ``ie/s/j/simatic/v1/A/status``: ``available`` as birth, ``unavailable`` as will and on
  a clean stop, retained, with the state of the WinCC connection.

Datapoint ids are kept with the aliases a Sparkplug node would use, in
``<buffer.path>.databus.json`` (same rules: unique, stable, never reused). Alarms are not
published in this format; commands are the JSON commands under ``mqtt.topic_prefix``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from gateway.buffer.store import Message
from gateway.core.alarms import AlarmDiff
from gateway.core.models import TagType, Value
from gateway.core.payloads import compact_json
from gateway.core.timestamps import format_ts, now_ms
from gateway.formats.base import Sample, Status, Watched
from gateway.formats.json_topics import JsonCommands
from gateway.formats.sparkplug_state import SparkplugState

log = logging.getLogger(__name__)

BASE = "ie/{kind}/j/simatic/v1/{app}"
DATATYPES = {
    TagType.FLOAT: "LReal",
    TagType.INT: "LInt",
    TagType.BOOL: "Bool",
    TagType.STRING: "String",
}
"""WinCC tag types as Databus data types; any other type is a String holding its JSON."""
_TYPE_CODES = {name: code for code, name in enumerate(("LReal", "LInt", "Bool", "String"))}


def quality_code(code: int) -> int:
    """The Databus ``qc`` of a WinCC quality byte: 0 bad, 1 uncertain, 3 good."""
    main = (code >> 6) & 3
    return 0 if main == 0 else 1 if main == 1 else 3


def databus_value(datatype: str, value: Value) -> Any:
    """The value as the Databus carries it: 64-bit integers as strings, a value of
    another type as its JSON text (in a String datapoint)."""
    if value is None:
        return None
    if datatype == "LInt" and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if datatype == "String" and not isinstance(value, str):
        return compact_json(value).decode()
    return value


class DatabusConnector:
    """The Industrial Edge Databus output format: one connector app instance."""

    per_read = True  # one message per read and collection
    watched: tuple[str, ...] = ()
    holding = False

    def __init__(
        self,
        *,
        app_instance: str,
        connection: str,
        state: SparkplugState,
        tag_types: Mapping[str, TagType],
        prefix: str,
    ) -> None:
        self._metadata = BASE.format(kind="m", app=app_instance) + "/dp"
        self._values = BASE.format(kind="d", app=app_instance) + f"/dp/r/{connection}/"
        self._status_topic = BASE.format(kind="s", app=app_instance) + "/status"
        self._app = app_instance
        self._connection = connection
        self._state = state
        self._tag_types = tag_types
        self._commands = JsonCommands(prefix)
        self._seq: dict[str, int] = {}  # per values topic, counted from this start
        self._meta_seq = 0
        self._alarms_said = False

    @property
    def commands(self) -> JsonCommands:
        """The JSON commands under ``mqtt.topic_prefix``."""
        return self._commands

    @property
    def finish(self) -> Callable[[Message], Message] | None:
        """None: the buffer holds finished messages."""
        return None

    def observe(self, topic: str, payload: bytes) -> Watched | None:
        """None: no topics are watched."""
        return None

    def samples(self, group: str, samples: list[Sample], *, backfill: bool) -> list[Message]:
        """One message for the read: each known datapoint by id, with its source time and
        quality."""
        metrics = self._state.metrics
        names = list(_TYPE_CODES)
        vals = []
        for reading, _, _ in samples:
            known = metrics.get(reading.name)
            if known is None:  # not in the metadata: no id a consumer could know
                continue
            point_id, type_code = known
            vals.append(
                {
                    "id": str(point_id),
                    "val": databus_value(names[type_code], reading.value),
                    "ts": format_ts(reading.ts_ms),
                    "qc": quality_code(reading.quality),
                    "qx": reading.quality,
                }
            )
        if not vals:
            return []
        topic = self._values + group
        seq = self._seq[topic] = self._seq.get(topic, 0) + 1
        return [Message(topic, compact_json({"seq": seq, "vals": vals}), 0, False)]

    def alarms(self, diff: AlarmDiff) -> list[Message]:
        """Nothing: alarms are not published in this format (said once)."""
        if not self._alarms_said and (diff.changed or diff.events):
            self._alarms_said = True
            log.warning(
                "alarms are not published with mqtt.payload = databus; set alarms.enabled "
                "= false to stop polling them"
            )
        return []

    def catalog(self, groups: dict[str, list[str]]) -> list[Message]:
        """Record the collections and give new tags ids; the metadata when anything
        changed."""
        collections = {group: list(names) for group, names in groups.items() if names}
        types = {
            name: _TYPE_CODES[DATATYPES.get(self._tag_types.get(name, TagType.UNKNOWN), "String")]
            for names in collections.values()
            for name in names
        }
        changed = self._state.add_metrics(types)
        if not changed and collections == self._state.devices:
            return []
        self._state.devices = collections
        self._state.save()
        return [self._metadata_message()]

    def will(self, since_ms: int) -> Message:
        """Status ``unavailable``, retained."""
        return self._status(Status("offline", since_ms))

    def on_connect(self, status: Status) -> list[Message]:
        """Status ``available``, then the metadata, before any values."""
        return [self._status(status), self._metadata_message()]

    def on_source(self, status: Status) -> list[Message]:
        """The status, with the WinCC connection's new state."""
        return [self._status(status)]

    def on_tick(self, status: Status) -> list[Message]:
        """Nothing: the retained status says it all."""
        return []

    def on_leave(self, status: Status) -> Message:
        """Status ``unavailable``."""
        return self._status(status)

    def _status(self, status: Status) -> Message:
        available = status.state == "online"
        body = {
            "ts": format_ts(now_ms()),
            "connector": {"status": "available" if available else "unavailable"},
            "connections": [
                {"name": self._connection, "status": "good" if status.source == "up" else "bad"}
            ],
        }
        return Message(self._status_topic, compact_json(body), 1, True)

    def _metadata_message(self) -> Message:
        metrics = self._state.metrics
        names = list(_TYPE_CODES)
        self._meta_seq += 1
        points = [
            {
                "name": collection,
                "topic": self._values + collection,
                "publishType": "bulk",
                "dataPointDefinitions": [
                    {"name": tag, "id": str(metrics[tag][0]), "dataType": names[metrics[tag][1]]}
                    for tag in tags
                    if tag in metrics
                ],
            }
            for collection, tags in self._state.devices.items()
        ]
        body = {
            "seq": self._meta_seq,
            "applicationName": self._app,
            "statustopic": self._status_topic,
            "connections": [{"name": self._connection, "type": "WinCC", "dataPoints": points}],
        }
        return Message(self._metadata, compact_json(body), 1, True)
