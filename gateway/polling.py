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
from gateway.buffer.outbox import DurableBuffer
from gateway.buffer.store import AlarmState, Message, PollMark, TagState
from gateway.config import BackfillSettings
from gateway.core.alarms import AlarmTracker
from gateway.core.gaps import gap_window
from gateway.core.models import Alarm, AlarmList, Reading, ReadResult
from gateway.core.payloads import (
    alarm_event_payload,
    alarm_payload,
    batch_payloads,
    sample_payload,
)
from gateway.core.samples import SampleDecider
from gateway.core.timestamps import format_ts, now_ms
from gateway.core.topics import TopicMap, escape_level
from gateway.errors import WinCCError, WinCCUnavailable
from gateway.wincc.base import WinCCClient
from gateway.wincc.concurrency import run_all

log = logging.getLogger(__name__)

SourceListener = Callable[[str], Awaitable[None]]
RETRY_CAP = 5.0
"""Longest wait between two polls while WinCC is unavailable: recovery is seen quickly."""

SPREAD = 0.5
"""Share of the interval over which the chunks of a large group start, one message per tag."""

MARK_EVERY = 1.0
"""Seconds between two writes of a group's poll mark: a restart fills at most this much
more than it needs to, and a fast group does not write the mark on every poll."""

SLACK_MS = 1000
"""Added to a gap measured on the host's clock, for the time a poll's reads are spread."""

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
    gaps_unfilled: int = 0  # stretches of time that could not be filled from the archive
    gap_unfilled_seconds: float = 0.0


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
        resume: PollMark | None = None,
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
        # How far the last good poll read (WinCC's clock) and when (host's); a gap to
        # fill starts there. After a restart, from where the last run stopped.
        self._mark: PollMark | None = resume
        self._gap: PollMark | None = resume
        self._mark_saved = float("-inf")  # event-loop time the mark was last stored
        self._lost = False  # the disk refused some of this poll's samples

    @property
    def mark(self) -> PollMark | None:
        """How far the last good poll read; a poller replacing this one fills from there."""
        return self._mark if self._gap is None else self._gap

    async def run(self) -> None:
        """Poll forever on the interval; back off while polls fail, and after any failed
        stretch of polls (or the gateway's own downtime) fill the gap from the WinCC
        archive before live values resume."""
        loop = asyncio.get_running_loop()
        backoff = Backoff(base=self.interval, cap=max(RETRY_CAP, self.interval))
        next_at = loop.time()
        while True:
            delay = next_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            started = loop.time()
            polled_at = now_ms()
            self._lost = False
            # One message per tag: each chunk is published as soon as it is in, so a
            # change waits for its own chunk, not for the whole group, and the chunks
            # are spread over half the interval, so no chunk waits behind the others
            # to be decided and stored. Not while a gap is being filled (the archive
            # goes first) nor for batch payloads (one snapshot per poll).
            streaming = self._gap is None and self._topics.batch_max_bytes is None
            try:
                result = await self._read(streaming=streaming)
            except WinCCError as exc:
                self.stats.failures += 1
                if self._gap is None:
                    self._gap = self._mark
                await self._source.failed(exc)
                next_at = loop.time() + backoff.next_delay()
                continue
            backoff.reset()
            await self._source.ok()
            newest = max(reading.ts_ms for reading in result.readings) if result.readings else 0
            if self._gap is not None:
                slack = SLACK_MS + int((loop.time() - started) * 1000)
                await self._fill(self._gap, newest, slack, result)
                self._gap = None
            if not streaming:
                await self.publish(result)
            finished = loop.time()
            if result.readings:
                await self._advance_mark(newest, int((finished - started) * 1000), polled_at)
            self.stats.polls += 1
            self.stats.last_duration = finished - started
            self.stats.last_success = finished
            if self._observe is not None:
                self._observe(self.name, finished - started)
            next_at += self.interval
            if next_at < finished:
                self.stats.overruns += 1
                next_at = finished

    async def _read(self, *, streaming: bool) -> ReadResult:
        """One poll of the group; a poll where every tag failed counts as a failed poll."""
        if streaming:
            result = await self._client.read_many(
                self.tags, self.publish, spread=self.interval * SPREAD
            )
        else:
            result = await self._client.read_many(self.tags)
        if not result.readings and result.errors:
            name, reason = next(iter(result.errors.items()))
            raise WinCCError(f"group {self.name}: every tag failed, e.g. {name} ({reason})")
        return result

    async def _advance_mark(self, newest: int, duration_ms: int, polled_at: int) -> None:
        """Remember how far this good poll read, and store it now and then, after the
        samples it decided, so a restart fills the gap from there.

        Every tag was read after the poll started, so no later than ``duration_ms`` before
        the newest source timestamp of the poll: the mark is on WinCC's clock.
        """
        wincc_ms = newest - duration_ms
        if self._mark is not None:
            wincc_ms = max(wincc_ms, self._mark.wincc_ms)
        self._mark = PollMark(self.name, wincc_ms, polled_at)
        loop = asyncio.get_running_loop()
        if self._lost or loop.time() - self._mark_saved < MARK_EVERY:
            return
        self._mark_saved = loop.time()
        await self._buffer.append([], marks=[self._mark])

    async def _fill(self, gap: PollMark, end_ms: int, slack_ms: int, result: ReadResult) -> None:
        """Fill the gap since ``gap`` up to ``end_ms``, the newest source timestamp of the
        first good poll after it: the whole window is on WinCC's clock.

        WinCC timestamps only move when a value changes, so in a quiet plant the mark is
        old; the time that really passed, on the host's clock, bounds the window then.
        """
        window = gap_window(
            read_to_ms=gap.wincc_ms,
            read_at_ms=gap.host_ms,
            end_ms=end_ms,
            now_ms=now_ms(),
            slack_ms=slack_ms,
            max_gap_ms=int(self._backfill.max_gap * 1000) if self._backfill else 0,
        )
        if window is None:
            return
        if self._backfill is None:
            self._unfilled(window.start, end_ms, "backfill is off")
            return
        if window.fill_from > window.start:
            self._unfilled(
                window.start,
                window.fill_from,
                f"longer than backfill.max_gap ({self._backfill.max_gap:g} s)",
            )
        start_ms = window.fill_from
        # A tag whose current reading is no younger than the window's start, or than
        # what was decided already, did not change meanwhile: no archive to ask.
        newer = self._decider.newer_than_seen
        changed = [r.name for r in result.readings if r.ts_ms > start_ms and newer(r)]
        await self.backfill(start_ms, end_ms, changed)

    def _unfilled(self, start_ms: int, end_ms: int, why: str) -> None:
        """Say, once, which stretch of time stays a gap and why; counted."""
        seconds = (end_ms - start_ms) / 1000
        self.stats.gaps_unfilled += 1
        self.stats.gap_unfilled_seconds += seconds
        log.warning(
            "group %s: gap from %s to %s (%.1f s, WinCC time) not filled: %s",
            self.name,
            format_ts(start_ms),
            format_ts(end_ms),
            seconds,
            why,
        )

    async def backfill(self, start_ms: int, end_ms: int, names: list[str] | None = None) -> None:
        """Publish, in time order and flagged, what the archive recorded in (start, end]
        for ``names`` (all tags by default).

        Changes at or before ``start_ms`` (the last good poll) were already published or
        superseded by what was; the change detector drops repeats of published values. So
        are changes no younger than a tag's last decided reading: a poll that failed half
        way may have published its first chunks, and a restart knows the source timestamp
        of every tag's last published sample.
        """
        assert self._backfill is not None
        limit = asyncio.Semaphore(self._backfill.concurrency)
        names = self.tags if names is None else names
        if not names:
            return

        async def archived(name: str) -> list[Reading]:
            async with limit:
                return [
                    reading
                    async for reading in self._client.history(name, start_ms + 1, end_ms)
                    if start_ms < reading.ts_ms <= end_ms
                ]

        try:
            per_tag = await run_all([archived(name) for name in names])
        except WinCCError as exc:
            self._unfilled(start_ms, end_ms, f"the history request failed ({exc})")
            return
        empty = [name for name, found in zip(names, per_tag, strict=True) if not found]
        if empty:
            more = f" and {len(empty) - 1} more" if len(empty) > 1 else ""
            self._unfilled(
                start_ms,
                end_ms,
                f"the archive holds nothing for {empty[0]}{more}, changed meanwhile",
            )
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
        states: list[TagState] = [(r.name, seq, r.value, r.quality, r.ts_ms) for r, seq in decided]
        if await self._buffer.append(messages, states):
            return True
        self._lost = True
        return False

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
