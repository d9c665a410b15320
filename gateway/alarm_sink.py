"""Where alarms go once seen, however they arrived: a poll's full list of active alarms,
or one change at a time from a subscription.

The sink diffs what it is handed against the alarms it last committed, has the output
format shape the changes, and commits them with each alarm's state to the buffer, so a
restart knows what was published. If the disk refuses them, the sink forgets the change,
and the next look at the alarms diffs against what was stored before: the retained states
and events go out once the disk takes writes again.
"""

from __future__ import annotations

import logging
from typing import Protocol

from gateway.buffer.outbox import DurableBuffer
from gateway.buffer.store import AlarmState
from gateway.core.alarms import AlarmDiff, AlarmTracker
from gateway.core.models import Alarm, AlarmList
from gateway.core.payloads import alarm_from_payload, alarm_payload
from gateway.core.timestamps import now_ms
from gateway.core.values import short_text, show
from gateway.formats.base import OutputFormat
from gateway.sink import PollStats

log = logging.getLogger(__name__)


class AlarmFeed(Protocol):
    """What feeds the alarm sink, a poller or a subscription, as health and metrics see it."""

    @property
    def interval(self) -> float:
        """Seconds between two polls, or between two checks of a subscription's link."""
        ...

    @property
    def stats(self) -> PollStats:
        """Its counters."""
        ...

    @property
    def active(self) -> dict[str, Alarm]:
        """The alarms active as last committed, by id."""
        ...


class AlarmSink:
    """Turns alarm lists into committed alarm messages: retained states, clears, events."""

    def __init__(
        self,
        *,
        output: OutputFormat,
        buffer: DurableBuffer,
        published: dict[str, Alarm] | None = None,
    ) -> None:
        self.stats = PollStats()  # the source that feeds this sink counts its reads here
        self._output = output
        self._buffer = buffer
        self._tracker = AlarmTracker()
        self._tracker.restore(published or {})
        self._reported_errors: set[str] = set()

    @property
    def active(self) -> dict[str, Alarm]:
        """The alarms active as last committed, by id (acks look ids up here)."""
        return self._tracker.active

    async def publish(self, alarms: list[Alarm]) -> None:
        """Take the full list of active alarms: alarms not in it are gone, except those
        the list names as unreadable, whose last known state stands."""
        stored = dict(self._tracker.active)
        unreadable = alarms.errors if isinstance(alarms, AlarmList) else {}
        if unreadable:
            self._report_errors(unreadable)
        await self._commit(self._tracker.update(alarms, now_ms(), unreadable), stored)

    async def change(self, alarm: Alarm) -> None:
        """Take one alarm's new state: it came, changed, was acknowledged or went."""
        stored = dict(self._tracker.active)
        await self._commit(self._tracker.change(alarm, now_ms()), stored)

    async def remove(self, alarm_id: str) -> None:
        """Take one alarm's leaving the active list."""
        stored = dict(self._tracker.active)
        await self._commit(self._tracker.remove(alarm_id, now_ms()), stored)

    async def _commit(self, diff: AlarmDiff, stored: dict[str, Alarm]) -> None:
        """Commit what ``diff`` changed; on a refusing disk, go back to ``stored``."""
        messages = self._output.alarms(diff)
        states: list[AlarmState] = [(alarm.id, alarm_payload(alarm)) for alarm in diff.changed]
        states += [(alarm_id, None) for alarm_id in diff.cleared]
        if not await self._buffer.append(messages, alarms=states):
            self._tracker.restore(stored)
            return
        self.stats.published += len(messages)

    def _report_errors(self, errors: dict[str, str]) -> None:
        """Log each alarm that cannot be read once, not once per look; count every time."""
        self.stats.read_errors += len(errors)
        new = {key: reason for key, reason in errors.items() if key not in self._reported_errors}
        if new:
            self._reported_errors.update(new)
            shown = ", ".join(f"{key} ({reason})" for key, reason in list(new.items())[:5])
            more = f" and {len(new) - 5} more" if len(new) > 5 else ""
            log.warning("cannot read alarm %s%s; its last known state stands", shown, more)


def restore_alarms(stored: dict[str, bytes]) -> dict[str, Alarm]:
    """The alarms a previous run published, from their stored retained states.

    A state that cannot be read (a damaged file, or written by a version with another
    format) is dropped with a warning. Its id is still tracked, as an alarm that went,
    so the first poll clears its retained message if the alarm is gone, or publishes it
    afresh if it is still active.
    """
    alarms: dict[str, Alarm] = {}
    for alarm_id, body in stored.items():
        try:
            alarms[alarm_id] = alarm_from_payload(body)
        except ValueError as exc:
            log.warning(
                "dropped the stored state of alarm %s (%s)", show(alarm_id), short_text(str(exc))
            )
            alarms[alarm_id] = Alarm(alarm_id, "", "", 0, "went", True, None, None, None)
    return alarms
