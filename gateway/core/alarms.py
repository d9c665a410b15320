"""Turns what WinCC reports of its active alarms into transitions, without I/O: whole
lists from a poll, or single changes from a source that pushes them."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field, replace

from gateway.core.models import Alarm


@dataclass(slots=True, frozen=True)
class AlarmTransition:
    """One alarm event: ``came``, ``went`` or ``acked``."""

    event: str
    alarm: Alarm
    at_ms: int


@dataclass(slots=True)
class AlarmDiff:
    """What one report changed: states to (re)publish, ids to clear, events to send."""

    changed: list[Alarm] = field(default_factory=list)
    cleared: list[str] = field(default_factory=list)
    events: list[AlarmTransition] = field(default_factory=list)


class AlarmTracker:
    """Remembers the active alarms and turns what WinCC reports into events.

    A polled source reports the whole list (``update``); a source that pushes reports
    one alarm at a time (``change``, ``remove``). Both go through the same per-alarm rules,
    so an alarm yields the same events however its changes arrive.
    """

    __slots__ = ("_active",)

    def __init__(self) -> None:
        self._active: dict[str, Alarm] = {}

    def restore(self, alarms: dict[str, Alarm]) -> None:
        """Start from the alarms a previous run had published: the first poll then clears
        those gone meanwhile and repeats no event for those still there."""
        self._active = dict(alarms)

    @property
    def active(self) -> dict[str, Alarm]:
        """The alarms active as last reported, by id.

        ``update`` replaces this dict rather than changing it, so a caller holding the
        one from before can ``restore`` it; ``change`` and ``remove`` change it in place.
        """
        return self._active

    def update(
        self, alarms: list[Alarm], now_ms: int, unreadable: Collection[str] = ()
    ) -> AlarmDiff:
        """Diff the full list of active ``alarms`` against the last one.

        An alarm seen for the first time yields the events of its current state; one that
        vanished from the list is cleared, with a ``went`` event if it had not gone yet.
        An alarm listed but ``unreadable`` has not vanished: its last state stands.
        """
        current = {alarm.id: alarm for alarm in alarms}
        for alarm_id in unreadable:
            old = self._active.get(alarm_id)
            if old is not None and alarm_id not in current:
                current[alarm_id] = old
        diff = AlarmDiff()
        for alarm in current.values():
            _arrived(self._active.get(alarm.id), alarm, now_ms, diff)
        for alarm_id, old in self._active.items():
            if alarm_id not in current:
                _left(alarm_id, old, now_ms, diff)
        self._active = current
        return diff

    def change(self, alarm: Alarm, now_ms: int) -> AlarmDiff:
        """One alarm came, changed, was acknowledged or went: ``alarm`` is its new state."""
        diff = AlarmDiff()
        _arrived(self._active.get(alarm.id), alarm, now_ms, diff)
        self._active[alarm.id] = alarm
        return diff

    def remove(self, alarm_id: str, now_ms: int) -> AlarmDiff:
        """The alarm ``alarm_id`` left the active list; an id not active is no change."""
        diff = AlarmDiff()
        old = self._active.pop(alarm_id, None)
        if old is not None:
            _left(alarm_id, old, now_ms, diff)
        return diff


def _arrived(old: Alarm | None, alarm: Alarm, now_ms: int, diff: AlarmDiff) -> None:
    """Add to ``diff`` what replacing ``old`` (None if it was not active) by ``alarm``
    yields: its state to publish, if it differs, and an event per transition."""
    if old == alarm:
        return
    diff.changed.append(alarm)
    if old is None or (old.state != alarm.state and alarm.state == "came"):
        diff.events.append(AlarmTransition("came", alarm, alarm.came_at or now_ms))
    if alarm.state == "went" and (old is None or old.state != "went"):
        diff.events.append(AlarmTransition("went", alarm, alarm.went_at or now_ms))
    if alarm.acked and (old is None or not old.acked):
        diff.events.append(AlarmTransition("acked", alarm, alarm.acked_at or now_ms))


def _left(alarm_id: str, old: Alarm, now_ms: int, diff: AlarmDiff) -> None:
    """Add to ``diff`` the clearing of ``alarm_id``, which left the active list in state
    ``old``, and a ``went`` event if it had not gone yet."""
    diff.cleared.append(alarm_id)
    if old.state != "went":
        gone = replace(old, state="went", went_at=now_ms)
        diff.events.append(AlarmTransition("went", gone, now_ms))
