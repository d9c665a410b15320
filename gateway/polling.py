"""The WinCC side of the pipeline: one poller per scan class, one for alarms.

Each poller reads on its own interval, lets the pure core decide what to publish, and
commits messages to the buffer without ever waiting for the broker. Polls never stack: an
overrunning poll delays the next one, and the overrun is counted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gateway.backoff import Backoff
from gateway.buffer import AlarmState, DurableBuffer, Message, TagState
from gateway.config import BackfillSettings
from gateway.core.alarms import AlarmTracker
from gateway.core.payloads import (
    alarm_event_payload,
    alarm_payload,
    batch_payloads,
    sample_payload,
)
from gateway.core.samples import SampleDecider
from gateway.core.timestamps import now_ms
from gateway.core.topics import TopicMap, escape_level
from gateway.errors import WinCCError, WinCCUnavailable
from gateway.wincc.base import WinCCClient
from gateway.wincc.concurrency import run_all
from gateway.wincc.models import Alarm, AlarmList, Reading, ReadResult

log = logging.getLogger(__name__)

SourceListener = Callable[[str], Awaitable[None]]
RETRY_CAP = 5.0
"""Longest wait between two polls while WinCC is unavailable: recovery is seen quickly."""

SPREAD = 0.5
"""Share of the interval over which the chunks of a large group start, one message per tag."""

PollObserver = Callable[[str, float], None]
"""Called after each successful poll with the group's name and the poll's duration."""


class SourceHealth:
    """Whether WinCC answers, as the pollers find it; one log line per change of state."""

    def __init__(self, on_change: SourceListener | None = None) -> None:
        self.state = "unknown"
        self.errors_by_kind: dict[str, int] = {}
        self._failing: str | None = None
        self._on_change = on_change

    async def ok(self) -> None:
        """A request succeeded."""
        self._failing = None
        if self.state != "up":
            if self.state == "down":
                log.info("WinCC source recovered")
            await self._set("up")

    async def failed(self, exc: WinCCError) -> None:
        """A request failed; only unavailability marks the source down.

        Other failures (refused login, protocol errors) are logged once each until the
        next success, not once per poll.
        """
        kind = type(exc).__name__
        self.errors_by_kind[kind] = self.errors_by_kind.get(kind, 0) + 1
        if isinstance(exc, WinCCUnavailable):
            if self.state != "down":
                log.warning("WinCC source down: %s", exc)
                await self._set("down")
        elif self._failing != str(exc):
            self._failing = str(exc)
            log.warning("WinCC request failed: %s", exc)

    async def _set(self, state: str) -> None:
        self.state = state
        if self._on_change is not None:
            await self._on_change(state)


@dataclass(slots=True)
class PollStats:
    """Counters of one scan class, for logs and metrics."""

    polls: int = 0
    failures: int = 0
    overruns: int = 0
    readings: int = 0
    published: int = 0
    read_errors: int = 0
    last_duration: float = 0.0
    last_success: float | None = None  # event-loop clock of the last successful poll
    backfilled: int = 0


@dataclass(slots=True, frozen=True)
class Topics:
    """Topic layout and publish options shared by the pollers."""

    prefix: str
    qos: int
    retain: bool
    batch_max_bytes: int | None = None  # set: one batch message per poll instead of per tag


class TagPoller:
    """Polls one scan class and turns changes into tag messages."""

    def __init__(
        self,
        *,
        name: str,
        interval: float,
        deadband: float,
        tags: list[str],
        client: WinCCClient,
        decider: SampleDecider,
        topic_map: TopicMap,
        topics: Topics,
        buffer: DurableBuffer,
        source: SourceHealth,
        observe: PollObserver | None = None,
        backfill: BackfillSettings | None = None,
    ) -> None:
        self.name = name
        self.interval = interval
        self.deadband = deadband
        self.tags = tags
        self._client = client
        self._decider = decider
        self._topic_map = topic_map
        self._topics = topics
        self._buffer = buffer
        self._source = source
        self._observe = observe
        self._backfill = backfill
        self._reported_errors: set[str] = set()
        self.stats = PollStats()

    async def run(self) -> None:
        """Poll forever on the interval; back off while WinCC is unavailable, and after an
        outage fill the gap from the WinCC archive before live values resume."""
        loop = asyncio.get_running_loop()
        backoff = Backoff(base=self.interval, cap=max(RETRY_CAP, self.interval))
        next_at = loop.time()
        last_good_ms: int | None = None
        outage_from: int | None = None
        while True:
            delay = next_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            started = loop.time()
            polled_at = now_ms()
            # One message per tag: each chunk is published as soon as it is in, so a
            # change waits for its own chunk, not for the whole group, and the chunks
            # are spread over half the interval, so no chunk waits behind the others
            # to be decided and stored. Not while an outage is being recovered (the
            # archive goes first) nor for batch payloads (one snapshot per poll).
            streaming = outage_from is None and self._topics.batch_max_bytes is None
            try:
                if streaming:
                    result = await self._client.read_many(
                        self.tags, self.publish, spread=self.interval * SPREAD
                    )
                else:
                    result = await self._client.read_many(self.tags)
            except WinCCError as exc:
                self.stats.failures += 1
                if isinstance(exc, WinCCUnavailable) and outage_from is None:
                    outage_from = last_good_ms
                await self._source.failed(exc)
                next_at = loop.time() + backoff.next_delay()
                continue
            backoff.reset()
            await self._source.ok()
            if outage_from is not None and self._backfill is not None:
                await self.backfill(
                    max(outage_from, polled_at - int(self._backfill.max_gap * 1000)), polled_at
                )
            outage_from = None
            last_good_ms = polled_at
            if not streaming:
                await self.publish(result)
            finished = loop.time()
            self.stats.polls += 1
            self.stats.last_duration = finished - started
            self.stats.last_success = finished
            if self._observe is not None:
                self._observe(self.name, finished - started)
            next_at += self.interval
            if next_at < finished:
                self.stats.overruns += 1
                next_at = finished

    async def backfill(self, start_ms: int, end_ms: int) -> None:
        """Publish, in time order and flagged, what the archive recorded in (start, end].

        Changes at or before ``start_ms`` (the last good poll) were already published or
        superseded by what was; the change detector drops repeats of published values. So
        are changes no younger than a tag's last decided reading: a poll that failed half
        way may have published its first chunks.
        """
        assert self._backfill is not None
        limit = asyncio.Semaphore(self._backfill.concurrency)

        async def archived(name: str) -> list[Reading]:
            async with limit:
                return [
                    reading
                    async for reading in self._client.history(name, start_ms + 1, end_ms)
                    if start_ms < reading.ts_ms <= end_ms
                ]

        try:
            per_tag = await run_all([archived(name) for name in self.tags])
        except WinCCError as exc:
            log.warning(
                "group %s: backfill of %.1f s of history failed (%s); the gap stays",
                self.name,
                (end_ms - start_ms) / 1000,
                exc,
            )
            return
        newer = self._decider.newer_than_seen
        readings = sorted(
            (r for found in per_tag for r in found if newer(r)), key=lambda r: r.ts_ms
        )
        decided = self._decider.decide(readings, self.deadband)
        if not await self._commit(decided, backfill=True):
            return  # the disk refused them: the buffer counts and logs that
        self.stats.backfilled += len(decided)
        log.info(
            "group %s: backfilled %d samples from %.1f s of WinCC history",
            self.name,
            len(decided),
            (end_ms - start_ms) / 1000,
        )

    async def publish(self, result: ReadResult) -> None:
        """Decide which readings of a poll (or of one chunk of it) to publish and commit
        them, with their seq, to the buffer."""
        self.stats.readings += len(result.readings)
        if result.errors:
            self._report_errors(result.errors)
        decided = self._decider.decide(result.readings, self.deadband)
        if await self._commit(decided, backfill=False):
            self.stats.published += len(decided)

    async def _commit(self, decided: list[tuple[Reading, int]], *, backfill: bool) -> bool:
        """Shape the decided samples and commit them, with their tag state, to the buffer;
        False when the disk refused them (the decider has heard so from the buffer)."""
        if not decided:
            return True
        topics = self._topics
        is_good = self._decider.is_good
        if topics.batch_max_bytes is not None:
            topic = f"{topics.prefix}/batch/{escape_level(self.name)}"
            messages = [
                Message(topic, payload, topics.qos, False)
                for payload in batch_payloads(
                    now_ms(),
                    [(reading, seq, is_good(reading.quality)) for reading, seq in decided],
                    max_bytes=topics.batch_max_bytes,
                    backfill=backfill,
                )
            ]
        else:
            prefix = topics.prefix + "/tags/"
            path = self._topic_map.path
            messages = [
                Message(
                    prefix + path(reading.name),
                    sample_payload(reading, seq, good=is_good(reading.quality), backfill=backfill),
                    topics.qos,
                    topics.retain,
                )
                for reading, seq in decided
            ]
        states: list[TagState] = [(r.name, seq, r.value, r.quality) for r, seq in decided]
        return await self._buffer.append(messages, states)

    def _report_errors(self, errors: dict[str, str]) -> None:
        """Log each failing tag once, not once per poll."""
        self.stats.read_errors += len(errors)
        new = {name: reason for name, reason in errors.items() if name not in self._reported_errors}
        if new:
            self._reported_errors.update(new)
            shown = ", ".join(f"{name} ({reason})" for name, reason in list(new.items())[:5])
            more = f" and {len(new) - 5} more" if len(new) > 5 else ""
            log.warning("group %s: cannot read %s%s", self.name, shown, more)


class AlarmPoller:
    """Polls active alarms, publishes retained state per alarm and one event per change."""

    def __init__(
        self,
        *,
        interval: float,
        client: WinCCClient,
        topics: Topics,
        buffer: DurableBuffer,
        source: SourceHealth,
        published: dict[str, Alarm] | None = None,
    ) -> None:
        self.interval = interval
        self._client = client
        self._topics = topics
        self._buffer = buffer
        self._source = source
        self._tracker = AlarmTracker()
        self._tracker.restore(published or {})
        self._reported_errors: set[str] = set()
        self.stats = PollStats()

    @property
    def active(self) -> dict[str, Alarm]:
        """The alarms active at the last poll, by id (acks look ids up here)."""
        return self._tracker.active

    async def run(self) -> None:
        """Poll forever on the interval; back off while WinCC is unavailable."""
        loop = asyncio.get_running_loop()
        backoff = Backoff(base=self.interval, cap=max(RETRY_CAP, self.interval))
        while True:
            started = loop.time()
            try:
                alarms = await self._client.active_alarms()
            except WinCCError as exc:
                self.stats.failures += 1
                await self._source.failed(exc)
                await asyncio.sleep(backoff.next_delay())
                continue
            backoff.reset()
            await self._source.ok()
            await self.publish(alarms)
            self.stats.polls += 1
            elapsed = loop.time() - started
            self.stats.last_duration = elapsed
            self.stats.last_success = loop.time()
            if elapsed > self.interval:
                self.stats.overruns += 1
            await asyncio.sleep(max(0.0, self.interval - elapsed))

    async def publish(self, alarms: list[Alarm]) -> None:
        """Diff against the last poll and commit state, clears and events to the buffer.

        If the disk refused them, the next poll diffs against what was stored before, so
        the retained states and events are published once it takes writes again.
        """
        stored = self._tracker.active
        unreadable = alarms.errors if isinstance(alarms, AlarmList) else {}
        if unreadable:
            self._report_errors(unreadable)
        diff = self._tracker.update(alarms, now_ms(), unreadable)
        base = self._topics.prefix + "/alarms/"
        qos = self._topics.qos
        states = [(alarm.id, alarm_payload(alarm)) for alarm in diff.changed]
        messages = [
            Message(base + escape_level(alarm_id), payload, qos, True)
            for alarm_id, payload in states
        ]
        messages += [
            Message(base + escape_level(alarm_id), b"", qos, True) for alarm_id in diff.cleared
        ]
        messages += [
            Message(base + "events", alarm_event_payload(t.alarm, t.event, t.at_ms), qos, False)
            for t in diff.events
        ]
        cleared: list[AlarmState] = [(alarm_id, None) for alarm_id in diff.cleared]
        if not await self._buffer.append(messages, alarms=[*states, *cleared]):
            self._tracker.restore(stored)
            return
        self.stats.published += len(messages)

    def _report_errors(self, errors: dict[str, str]) -> None:
        """Log each alarm that cannot be read once, not once per poll; count every time."""
        self.stats.read_errors += len(errors)
        new = {key: reason for key, reason in errors.items() if key not in self._reported_errors}
        if new:
            self._reported_errors.update(new)
            shown = ", ".join(f"{key} ({reason})" for key, reason in list(new.items())[:5])
            more = f" and {len(new) - 5} more" if len(new) > 5 else ""
            log.warning("cannot read alarm %s%s; its last known state stands", shown, more)
