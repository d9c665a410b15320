"""The plant as a WinCC Unified runtime shows it: the resolvers of tag values, browsing,
logged values, alarms, writes and acknowledgements, and the subscription streams.

Error codes in answers: "0" success, "2" no such tag, logging tag or active alarm, "201"
value not convertible to the tag's type; "203" (tag not writable) is the simulator's own
choice. Written values take the server's time and a good quality: the ``timestamp`` and
``quality`` inputs are accepted and not applied. Logged values come from the plant's
history, one logging tag ``<tag>:Log`` per tag; bounding values are not offered.

Alarms are named ``System1::<tag>:<Alarm>`` with the plant's alarm number as instance ID.
A tag subscription first sends each name's current value (reason "Added"), then every
change (reason "Modified"); an alarm subscription sends the active alarms ("Added"), then
each alarm that comes ("Added"), changes ("Modified") or leaves the list ("Removed", with
its final state).
"""

from __future__ import annotations

import asyncio
import fnmatch
import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from graphql import GraphQLError, GraphQLResolveInfo

from gateway.core.models import TagType, Value
from gateway.core.timestamps import format_ts, parse_ts
from gateway.simulator.plant import (
    ROOT,
    ReadOnlyError,
    SimAlarm,
    TypeMismatchError,
    UnknownAlarmError,
    UnknownTagError,
)
from gateway.simulator.unified_schema import quality_fields

if TYPE_CHECKING:
    from gateway.simulator.server import Simulator

LOGGING_TAG = "Log"  # the one logging tag of every tag: "<tag>:Log"
NEVER = format_ts(0)  # how Unified writes a time that has not happened
OK = {"code": "0", "description": ""}
NOT_FOUND, NOT_CONVERTIBLE, NOT_WRITABLE = "2", "201", "203"
DATA_TYPES = {TagType.BOOL: "Bool", TagType.INT: "DInt", TagType.FLOAT: "LReal"}
DATA_TYPES[TagType.STRING] = "WString"
TAG_OBJECT_TYPES = frozenset({"TAG", "SIMPLETAG"})


REDU_CHECK = 0.05
"""Seconds between two looks at the ``redu_state`` fault of a reduState subscription."""


def _value(value: Value, quality: int, ts_ms: int) -> dict[str, object]:
    return {"value": value, "timestamp": format_ts(ts_ms), "quality": quality_fields(quality)}


def unified_state(alarm: SimAlarm) -> str:
    """The alarm's state as Unified names it."""
    if alarm.came_at is None:
        return "NORMAL"
    if alarm.went_at is None:
        return "RAISED_ACKNOWLEDGED" if alarm.acked else "RAISED"
    if not alarm.acked:
        return "RAISED_CLEARED"
    assert alarm.acked_at is not None
    acked_first = alarm.acked_at < alarm.went_at
    return "RAISED_ACKNOWLEDGED_CLEARED" if acked_first else "RAISED_CLEARED_ACKNOWLEDGED"


class PlantResolvers:
    """Resolvers over the simulator's plant, and the queues of the open subscriptions."""

    def __init__(self, simulator: Simulator) -> None:
        self._sim = simulator
        self._tag_queues: dict[int, list[asyncio.Queue[dict[str, object]]]] = {}
        self._alarm_queues: list[asyncio.Queue[tuple[str, bool, dict[str, object]]]] = []
        self._alarm_names = {
            alarm.id: f"{ROOT}::{alarm.tag}:{alarm.point.text.title().replace(' ', '')}"
            for alarm in simulator.plant.alarms.values()
        }
        self._alarms_by_name = {name: alarm_id for alarm_id, name in self._alarm_names.items()}

    @property
    def streams(self) -> int:
        """Subscription streams following the plant; ended ones must let go of it."""
        queues = {id(queue) for queues in self._tag_queues.values() for queue in queues}
        return len(queues) + len(self._alarm_queues)

    def alarm_name(self, alarm_id: str) -> str:
        """The Unified name of a plant alarm."""
        return self._alarm_names[alarm_id]

    # --- queries -------------------------------------------------------------------------

    def tag_result(self, name: str) -> dict[str, object]:
        """A tag's current value, or the not-found error, as ``TagValueResult``."""
        plant = self._sim.plant
        i = plant.index.get(name)
        if i is None:
            return {"name": name, "value": None, "error": _not_found(f"no tag {name}")}
        item = plant.item(i)
        quality = item["quality"]
        assert isinstance(quality, int)
        value = {"value": item["value"], "timestamp": item["timestamp"]}
        return {"name": name, "value": {**value, "quality": quality_fields(quality)}, "error": OK}

    def tag_values(self, _root: None, _info: GraphQLResolveInfo, **args: Any) -> list[object]:
        names: list[str] = args["names"]
        self._sim.reads += 1
        self._sim.read_items += len(names)
        return [self.tag_result(name) for name in names]

    def browse(self, _root: None, _info: GraphQLResolveInfo, **args: Any) -> list[object]:
        # The runtime's own name filters (a wildcard matches across dots), not the gateway's
        # tag globs: the gateway browses without filters and matches its globs itself.
        filters = [re.compile(fnmatch.translate(f)) for f in args["nameFilters"] or () if f]
        kinds = {kind for kind in args["objectTypeFilters"] or () if kind}
        plant = self._sim.plant

        def wanted(name: str) -> bool:
            return not filters or any(pattern.match(name) for pattern in filters)

        found: list[object] = []
        if not kinds or kinds & TAG_OBJECT_TYPES:
            found.extend(
                {
                    "name": name,
                    "displayName": name.rsplit(".", 1)[-1],
                    "objectType": "TAG",
                    "dataType": DATA_TYPES[plant.tag_type(name)],
                }
                for name in plant.names
                if wanted(name)
            )
        if not kinds or "ALARM" in kinds:
            found.extend(
                {"name": name, "displayName": name.rsplit(":", 1)[-1], "objectType": "ALARM"}
                for name in self._alarms_by_name
                if wanted(name)
            )
        return found

    def logged_tag_values(
        self, _root: None, _info: GraphQLResolveInfo, **args: Any
    ) -> list[object]:
        try:
            start_ms = parse_ts(args["startTime"]) if args.get("startTime") else 0
            end_ms = parse_ts(args["endTime"]) if args.get("endTime") else self._sim.now()
        except (TypeError, ValueError) as exc:
            raise GraphQLError(f"bad startTime or endTime: {exc}") from exc
        limit = args["maxNumberOfValues"] or 0
        descending = args["sortingMode"] == "TIME_DESC"
        results: list[object] = []
        plant = self._sim.plant
        for name in args["names"]:
            tag, _, logging_tag = (name or "").rpartition(":")
            if logging_tag != LOGGING_TAG or tag not in plant.index:
                error = _not_found(f"no logging tag {name}")
                results.append({"loggingTagName": name, "error": error, "values": []})
                continue
            depth = max(1, plant.history_length(tag))
            page, _ = plant.history(tag, start_ms=start_ms, end_ms=end_ms, limit=depth)
            if descending:
                page.reverse()
            if limit > 0:
                page = page[:limit]
            values = [{"value": _value(r.value, r.quality, r.ts_ms), "flags": []} for r in page]
            results.append({"loggingTagName": name, "error": OK, "values": values})
        return results

    def alarm_fields(self, alarm: SimAlarm) -> dict[str, object]:
        """The ``ActiveAlarm`` fields of an alarm as it is now."""
        times = [t for t in (alarm.came_at, alarm.went_at, alarm.acked_at) if t is not None]
        return {
            "name": self._alarm_names[alarm.id],
            "instanceID": int(alarm.id),
            "alarmClassName": "Alarm" if alarm.point.priority >= 8 else "Warning",
            "state": unified_state(alarm),
            "priority": alarm.point.priority,
            "eventText": [alarm.text],
            "raiseTime": _time(alarm.came_at),
            "acknowledgmentTime": _time(alarm.acked_at),
            "clearTime": _time(alarm.went_at),
            "modificationTime": _time(max(times, default=None)),
            "value": self._sim.plant.reading(alarm.tag).value,
        }

    def active_alarms(self, _root: None, _info: GraphQLResolveInfo, **args: Any) -> list[object]:
        if args["systemNames"] and ROOT not in args["systemNames"]:
            return []
        plant = self._sim.plant
        return [self.alarm_fields(plant.alarms[alarm.id]) for alarm in plant.active_alarms()]

    # --- mutations -----------------------------------------------------------------------

    def write_tag_values(self, _root: None, _info: GraphQLResolveInfo, **args: Any) -> list[object]:
        return [self._write(item) for item in args["input"]]

    def _write(self, item: dict[str, Any] | None) -> dict[str, object]:
        if item is None:
            return {"name": None, "error": _not_found("no tag given")}
        sim, name = self._sim, item["name"]
        try:
            reading = sim.plant.write(name, item["value"], now_ms=sim.now())
        except UnknownTagError as exc:
            return {"name": name, "error": _not_found(str(exc))}
        except TypeMismatchError as exc:
            error = {"code": NOT_CONVERTIBLE, "description": f"cannot convert: {exc}"}
            return {"name": name, "error": error}
        except ReadOnlyError as exc:
            return {"name": name, "error": {"code": NOT_WRITABLE, "description": str(exc)}}
        sim.write_log.append((name, reading.value))
        sim.writes += 1
        return {"name": name, "error": OK}

    def acknowledge_alarms(
        self, _root: None, _info: GraphQLResolveInfo, **args: Any
    ) -> list[object]:
        return [self._acknowledge(item) for item in args["input"]]

    def _acknowledge(self, item: dict[str, Any] | None) -> dict[str, object]:
        name, instance = (None, 0) if item is None else (item["name"], item["instanceID"])
        alarm_id = self._alarms_by_name.get(name or "")
        result: dict[str, object] = {"alarmName": name, "alarmInstanceID": instance}
        if alarm_id is None or instance not in (0, None, int(alarm_id)):
            return {**result, "error": _not_found(f"no alarm {name} with instance {instance}")}
        try:
            self._sim.plant.acknowledge(alarm_id, now_ms=self._sim.now())
        except UnknownAlarmError as exc:
            return {**result, "error": _not_found(str(exc))}
        self._sim.ack_log.append((alarm_id, None))
        self._sim.acks += 1
        return {**result, "alarmInstanceID": int(alarm_id), "error": OK}

    # --- subscriptions -------------------------------------------------------------------

    def tag_changed(self, i: int, value: Value, quality: int, ts_ms: int) -> None:
        queues = self._tag_queues.get(i)
        if queues:
            name = self._sim.plant.names[i]
            note: dict[str, object] = {
                "name": name,
                "value": _value(value, quality, ts_ms),
                "error": OK,
                "notificationReason": "Modified",
            }
            for queue in queues:
                queue.put_nowait(note)

    def alarm_changed(self, alarm: SimAlarm) -> None:
        if self._alarm_queues:
            event = (alarm.id, alarm.active, self.alarm_fields(alarm))
            for queue in self._alarm_queues:
                queue.put_nowait(event)

    async def subscribe_tag_values(
        self, _root: None, _info: GraphQLResolveInfo, **args: Any
    ) -> AsyncIterator[dict[str, object]]:
        """Each name's current value ("Added"), then every change ("Modified")."""
        names: list[str] = args["names"]
        index = self._sim.plant.index
        watched = {index[name] for name in names if name in index}
        queue: asyncio.Queue[dict[str, object]] = asyncio.Queue()
        for i in watched:
            self._tag_queues.setdefault(i, []).append(queue)
        try:
            for name in names:
                yield {**self.tag_result(name), "notificationReason": "Added"}
            while True:
                yield await queue.get()
        finally:
            for i in watched:
                self._tag_queues[i].remove(queue)
                if not self._tag_queues[i]:
                    del self._tag_queues[i]

    async def subscribe_alarms(
        self, _root: None, _info: GraphQLResolveInfo, **args: Any
    ) -> AsyncIterator[dict[str, object]]:
        """The active alarms ("Added"), then each that comes ("Added"), changes ("Modified")
        or leaves the list ("Removed")."""
        queue: asyncio.Queue[tuple[str, bool, dict[str, object]]] = asyncio.Queue()
        ours = not args["systemNames"] or ROOT in args["systemNames"]
        if ours:
            self._alarm_queues.append(queue)
        listed: set[str] = set()
        try:
            for alarm in self._sim.plant.active_alarms() if ours else ():
                listed.add(alarm.id)
                fields = self.alarm_fields(self._sim.plant.alarms[alarm.id])
                yield {**fields, "notificationReason": "Added"}
            while True:
                alarm_id, active, fields = await queue.get()
                if active:
                    reason = "Modified" if alarm_id in listed else "Added"
                    listed.add(alarm_id)
                elif alarm_id in listed:
                    reason = "Removed"
                    listed.discard(alarm_id)
                else:
                    continue
                yield {**fields, "notificationReason": reason}
        finally:
            if ours:
                self._alarm_queues.remove(queue)

    async def subscribe_redu_state(
        self, _root: None, _info: GraphQLResolveInfo, **_args: Any
    ) -> AsyncIterator[dict[str, object]]:
        """The server's redundancy state (the ``redu_state`` fault) now ("Added"), then
        whenever it changes ("Modified")."""
        faults = self._sim.faults
        state, reason = faults.redu_state, "Added"
        while True:
            value = {"value": state, "timestamp": format_ts(self._sim.now())}
            yield {"value": value, "notificationReason": reason}
            while faults.redu_state == state:  # noqa: ASYNC110 - faults change by assignment
                await asyncio.sleep(REDU_CHECK)
            state, reason = faults.redu_state, "Modified"


def _not_found(description: str) -> dict[str, str]:
    return {"code": NOT_FOUND, "description": description}


def _time(ms: int | None) -> str:
    return NEVER if ms is None else format_ts(ms)
