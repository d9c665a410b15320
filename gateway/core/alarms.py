"""Turns successive lists of active alarms into transitions, without I/O."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace

from gateway.core.models import Alarm


@dataclass(slots=True, frozen=True)
class AlarmTransition:
    """One alarm event: ``came``, ``went`` or ``acked``."""

    event: str
    alarm: Alarm
    at_ms: int


@dataclass(slots=True)
class AlarmDiff:
    """What one alarm poll changed: states to (re)publish, ids to clear, events to send."""

    changed: list[Alarm]
    cleared: list[str]
    events: list[AlarmTransition]


class AlarmTracker:
    """Remembers the last set of active alarms and diffs each new set against it."""

    __slots__ = ("_active",)

    def __init__(self) -> None:
        self._active: dict[str, Alarm] = {}

    def restore(self, alarms: dict[str, Alarm]) -> None:
        """Start from the alarms a previous run had published: the first poll then clears
        those gone meanwhile and repeats no event for those still there."""
        self._active = dict(alarms)

    @property
    def active(self) -> dict[str, Alarm]:
        """The alarms seen in the last poll, by id."""
        return self._active

    def update(
        self, alarms: list[Alarm], now_ms: int, unreadable: Collection[str] = ()
    ) -> AlarmDiff:
        """Diff ``alarms`` against the last poll.

        An alarm seen for the first time yields the events of its current state; one that
        vanished from the list is cleared, with a ``went`` event if it had not gone yet.
        An alarm listed but ``unreadable`` has not vanished: its last state stands.
        """
        current = {alarm.id: alarm for alarm in alarms}
        for alarm_id in unreadable:
            old = self._active.get(alarm_id)
            if old is not None and alarm_id not in current:
                current[alarm_id] = old
        diff = AlarmDiff(changed=[], cleared=[], events=[])
        for alarm_id, alarm in current.items():
            old = self._active.get(alarm_id)
            if old == alarm:
                continue
            diff.changed.append(alarm)
            if old is None or (old.state != alarm.state and alarm.state == "came"):
                diff.events.append(AlarmTransition("came", alarm, alarm.came_at or now_ms))
            if alarm.state == "went" and (old is None or old.state != "went"):
                diff.events.append(AlarmTransition("went", alarm, alarm.went_at or now_ms))
            if alarm.acked and (old is None or not old.acked):
                diff.events.append(AlarmTransition("acked", alarm, alarm.acked_at or now_ms))
        for alarm_id, old in self._active.items():
            if alarm_id not in current:
                diff.cleared.append(alarm_id)
                if old.state != "went":
                    gone = replace(old, state="went", went_at=now_ms)
                    diff.events.append(AlarmTransition("went", gone, now_ms))
        self._active = current
        return diff
