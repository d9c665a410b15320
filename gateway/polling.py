"""The WinCC side of the pipeline: one poller per scan class, one for alarms.

Each poller reads on its own interval and hands what it read on: a tag poller to its
group's sink (gateway.sink), which decides, commits and fills gaps; the alarm poller to
the alarm sink (gateway.alarm_sink). Nothing here schedules anything but reads, and
nothing waits for the broker. Polls never stack: an
overrunning poll delays the next one, and the overrun is counted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from operator import attrgetter

from gateway.alarm_sink import AlarmSink
from gateway.backoff import Backoff
from gateway.core.models import Alarm, ReadResult
from gateway.core.timestamps import now_ms
from gateway.errors import WinCCError, WinCCUnavailable
from gateway.sink import TagSink
from gateway.wincc.base import WinCCClient
from gateway.wincc.concurrency import read_chunks

log = logging.getLogger(__name__)

SourceListener = Callable[[str], Awaitable[None]]
RETRY_CAP = 5.0
"""Longest wait between two polls while WinCC is unavailable: recovery is seen quickly."""

SPREAD = 0.5
"""Share of the interval over which the chunks of a large group start, one message per tag."""

SLACK_MS = 1000
"""Added to a gap measured on the host's clock, for the time a poll's reads are spread."""

SOURCE_TIME = attrgetter("ts_ms")
"""A reading's source timestamp; mapped over a poll's readings in C, not a generator."""

PollObserver = Callable[[str, float], None]
"""Called after each successful poll with the group's name and the poll's duration."""


def newest_time(result: ReadResult, *, whole: bool) -> int:
    """The newest source timestamp of a read, 0 for none. Of a chunk whose answer follows
    an earlier one, only the fresh readings count unless ``whole``: the others are that
    answer's, counted then. Never later than the newest of all, so a mark from it is
    never later than the read."""
    readings = result.readings
    if not whole and result.lineages is not None:
        readings = [
            reading
            for lineage in result.lineages
            for reading in (lineage.readings if lineage.follows is None else lineage.fresh)
        ]
    return max(map(SOURCE_TIME, readings), default=0)


class SourceHealth:
    """Whether WinCC answers, as the pollers find it; one log line per change of state."""

    def __init__(self, on_change: SourceListener | None = None) -> None:
        self.state = "unknown"
        self.since_ms = now_ms()  # wall clock of the last change of state
        self.last_error: tuple[int, str] | None = None  # when, and what failed last
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
        self.last_error = (now_ms(), str(exc))
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
        self.since_ms = now_ms()
        if self._on_change is not None:
            await self._on_change(state)


class TagPoller:
    """Reads one scan class on its interval and feeds what it reads to its sink."""

    def __init__(
        self,
        *,
        name: str,
        interval: float,
        tags: list[str],
        client: WinCCClient,
        sink: TagSink,
        source: SourceHealth,
        observe: PollObserver | None = None,
    ) -> None:
        self.name = name
        self.interval = interval
        self.tags = tags
        self.sink = sink
        self.stats = sink.stats
        self._client = client
        self._source = source
        self._observe = observe

    async def run(self) -> None:
        """Poll forever on the interval; back off while polls fail, and after any failed
        stretch of polls (or the gateway's own downtime) have the sink fill the gap from
        the WinCC archive before live values resume."""
        loop = asyncio.get_running_loop()
        backoff = Backoff(base=self.interval, cap=max(RETRY_CAP, self.interval))
        sink = self.sink
        next_at = loop.time()
        while True:
            delay = next_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            started = loop.time()
            polled_at = now_ms()
            sink.begin()
            # One message per tag: each chunk is published as soon as it is in, so a
            # change waits for its own chunk, not for the whole group, and the chunks
            # are spread over half the interval, so no chunk waits behind the others
            # to be decided and stored. Not while a gap is being filled (the archive
            # goes first) nor for batch payloads (one snapshot per poll).
            streaming = not sink.gap_open and not sink.per_read
            try:
                if streaming:
                    result = None
                    newest, read_any = await self._stream()
                else:
                    result = await self._read_whole()
                    newest = newest_time(result, whole=sink.gap_open)
                    read_any = bool(result.readings)
            except WinCCError as exc:
                self.stats.failures += 1
                sink.interrupted()
                await self._source.failed(exc)
                next_at = loop.time() + backoff.next_delay()
                continue
            backoff.reset()
            await self._source.ok()
            if result is not None:
                if sink.gap_open:
                    slack = SLACK_MS + int((loop.time() - started) * 1000)
                    await sink.fill(newest, slack, result)
                await sink.publish(result)
            finished = loop.time()
            if read_any:
                await sink.advance(newest, int((finished - started) * 1000), polled_at)
            self.stats.polls += 1
            self.stats.last_duration = finished - started
            self.stats.last_success = finished
            if self._observe is not None:
                self._observe(self.name, finished - started)
            next_at += self.interval
            if next_at < finished:
                self.stats.overruns += 1
                next_at = finished

    async def _stream(self) -> tuple[int, bool]:
        """One poll of the group in chunks of the client's ``batch_size`` (one request
        each, as the client would split it), started spread over ``SPREAD`` of the
        interval and each handed to the sink as soon as it is in: the newest source
        time of what it read, and whether it read anything. The chunks' results are
        not merged: the sink has them all."""
        client = self._client
        parts = await read_chunks(
            self.tags,
            client.batch_size,
            client.read_many,
            self.sink.publish,
            spread=self.interval * SPREAD,
        )
        if not any(part.readings for part in parts):
            self._check_not_all_failed(next((p.errors for p in parts if p.errors), {}))
            return 0, False
        return max(newest_time(part, whole=False) for part in parts), True

    async def _read_whole(self) -> ReadResult:
        """One poll of the group in one read (the client splits it as it needs)."""
        result = await self._client.read_many(self.tags)
        if not result.readings:
            self._check_not_all_failed(result.errors)
        return result

    def _check_not_all_failed(self, errors: dict[str, str]) -> None:
        """A poll where every tag failed counts as a failed poll."""
        if errors:
            name, reason = next(iter(errors.items()))
            raise WinCCError(f"group {self.name}: every tag failed, e.g. {name} ({reason})")


class AlarmPoller:
    """Polls the active alarms on an interval and hands each full list to its sink."""

    def __init__(
        self, *, interval: float, client: WinCCClient, sink: AlarmSink, source: SourceHealth
    ) -> None:
        self.interval = interval
        self.sink = sink
        self.stats = sink.stats
        self._client = client
        self._source = source

    @property
    def active(self) -> dict[str, Alarm]:
        """The alarms active at the last poll, by id (acks look ids up here)."""
        return self.sink.active

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
            await self.sink.publish(alarms)
            self.stats.polls += 1
            elapsed = loop.time() - started
            self.stats.last_duration = elapsed
            self.stats.last_success = loop.time()
            if elapsed > self.interval:
                self.stats.overruns += 1
            await asyncio.sleep(max(0.0, self.interval - elapsed))
