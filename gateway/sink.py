"""Where tag readings go once read, however they arrived: a poll or a push.

The sink decides which readings to publish (change detection, quality policy), commits
them with their seqs to the buffer, fills gaps from the WinCC archive in time order
before live values resume, reports the stretches it cannot fill, and keeps the mark a
restart fills from. It never schedules a read: a poller, or a subscription, feeds it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from gateway.buffer.outbox import DurableBuffer
from gateway.buffer.store import PollMark, TagState
from gateway.config import BackfillSettings
from gateway.core.gaps import gap_window
from gateway.core.models import Lineage, Reading, ReadResult
from gateway.core.samples import SampleDecider
from gateway.core.timestamps import format_ts, now_ms
from gateway.errors import WinCCError
from gateway.formats.base import OutputFormat
from gateway.recent import RecentChanges
from gateway.wincc.concurrency import run_all

log = logging.getLogger(__name__)

MARK_EVERY = 1.0
"""Seconds between two writes of a group's poll mark: a restart fills at most this much
more than it needs to, and a fast group does not write the mark on every poll."""


@dataclass(slots=True)
class PollStats:
    """Counters of one scan class, for logs and metrics: the reads are counted by what
    feeds the sink, the samples by the sink."""

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


class GroupFeed(Protocol):
    """What feeds one scan class's sink, a poller or a subscription, as health, metrics
    and reloads see it."""

    @property
    def name(self) -> str:
        """The scan class."""
        ...

    @property
    def interval(self) -> float:
        """Seconds between two polls, or between two checks of a subscription's link."""
        ...

    @property
    def tags(self) -> list[str]:
        """The tags of the scan class."""
        ...

    @property
    def sink(self) -> TagSink:
        """Where its readings go."""
        ...

    @property
    def stats(self) -> PollStats:
        """Its counters."""
        ...


class Archive(Protocol):
    """What a sink needs of WinCC to fill a gap: its archive."""

    def history(self, name: str, start_ms: int, end_ms: int) -> AsyncIterator[Reading]:
        """Archived values of a tag in [start, end], oldest first."""
        ...


class TagSink:
    """Turns the readings of one group into committed tag messages, gaps filled first."""

    def __init__(
        self,
        *,
        name: str,
        deadband: float,
        archive: Archive,
        decider: SampleDecider,
        output: OutputFormat,
        buffer: DurableBuffer,
        backfill: BackfillSettings | None = None,
        resume: PollMark | None = None,
        changes: RecentChanges | None = None,
    ) -> None:
        self.name = name
        self.deadband = deadband
        self.stats = PollStats()  # the poller that feeds this sink counts its reads here
        self._archive = archive
        self._decider = decider
        self._output = output
        self._buffer = buffer
        self._backfill = backfill
        self._changes = changes  # the status page's last changes, one append per commit
        self._reported_errors: set[str] = set()
        # How far the last good read went (WinCC's clock) and when (host's); a gap to
        # fill starts there. After a restart, from where the last run stopped.
        self._mark: PollMark | None = resume
        self._gap: PollMark | None = resume
        self._mark_saved = float("-inf")  # event-loop time the mark was last stored
        self._lost = False  # the disk refused some of this read's samples
        # The source's last answer decided per chunk of names, and the decider's revision
        # then: an answer that follows it needs only its fresh readings decided.
        self._decided: dict[tuple[str, int], tuple[int, int]] = {}

    @property
    def mark(self) -> PollMark | None:
        """How far the last good read went; a sink replacing this one fills from there."""
        return self._mark if self._gap is None else self._gap

    @property
    def gap_open(self) -> bool:
        """Reads failed (or the gateway was down) since the last good read: the next
        good one is to be filled up to before anything else is published."""
        return self._gap is not None

    @property
    def per_read(self) -> bool:
        """The output encodes a read as a whole: hand it on only once complete."""
        return self._output.per_read

    def begin(self) -> None:
        """A read starts: its mark is stored only if the disk takes all its samples."""
        self._lost = False

    def interrupted(self) -> None:
        """A read failed: the gap to fill starts at the last good read."""
        if self._gap is None:
            self._gap = self._mark

    async def advance(self, newest: int, duration_ms: int, read_at: int) -> None:
        """Remember how far this good read went, and store it now and then, after the
        samples it decided, so a restart fills the gap from there.

        Every tag was read after the read started, so no later than ``duration_ms``
        before the newest source timestamp of the read: the mark is on WinCC's clock.
        """
        wincc_ms = newest - duration_ms
        if self._mark is not None:
            wincc_ms = max(wincc_ms, self._mark.wincc_ms)
        self._mark = PollMark(self.name, wincc_ms, read_at)
        loop = asyncio.get_running_loop()
        if self._lost or loop.time() - self._mark_saved < MARK_EVERY:
            return
        self._mark_saved = loop.time()
        await self._buffer.append([], marks=[self._mark])

    async def fill(self, end_ms: int, slack_ms: int, result: ReadResult) -> None:
        """Fill the open gap up to ``end_ms``, the newest source timestamp of the first
        good read after it, and close it: the whole window is on WinCC's clock.

        WinCC timestamps only move when a value changes, so in a quiet plant the mark is
        old; the time that really passed, on the host's clock, bounds the window then.
        ``slack_ms`` widens that bound by the time the read's requests were spread over.
        """
        if self._gap is not None:
            await self._fill(self._gap, end_ms, slack_ms, result)
            self._gap = None

    async def _fill(self, gap: PollMark, end_ms: int, slack_ms: int, result: ReadResult) -> None:
        """Fill what of the gap since ``gap`` the archive can and backfill allows."""
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
        await self._backfill_from(self._backfill, start_ms, end_ms, changed)

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

    async def _backfill_from(
        self, settings: BackfillSettings, start_ms: int, end_ms: int, names: list[str]
    ) -> None:
        """Publish, in time order and flagged, what the archive recorded in (start, end]
        for ``names``.

        Changes at or before ``start_ms`` (the last good read) were already published or
        superseded by what was; the change detector drops repeats of published values. So
        are changes no younger than a tag's last decided reading: a read that failed half
        way may have published its first chunks, and a restart knows the source timestamp
        of every tag's last published sample.
        """
        if not names:
            return
        limit = asyncio.Semaphore(settings.concurrency)

        async def archived(name: str) -> list[Reading]:
            async with limit:
                return [
                    reading
                    async for reading in self._archive.history(name, start_ms + 1, end_ms)
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
        """Decide which readings of a read (or of one chunk of it) to publish and commit
        them, with their seq, to the buffer."""
        self.stats.readings += len(result.readings)
        if result.errors:
            self._report_errors(result.errors)
        if result.lineages is None:
            decided = self._decider.decide(result.readings, self.deadband)
        else:
            decided = self._decider.decide(
                self._to_decide(result.lineages), self.deadband, revise=False
            )
        if await self._commit(decided, backfill=False):
            self.stats.published += len(decided)

    def _to_decide(self, lineages: list[Lineage]) -> list[Reading]:
        """The readings of a read's chunks that deciding could make something of: of a
        chunk whose answer follows one this sink decided, under the decider's current
        revision, only the fresh ones; the others are the very objects decided then."""
        revision = self._decider.revision
        decided = self._decided
        readings: list[Reading] = []
        for lineage in lineages:
            known = lineage.follows is not None and decided.get(lineage.chunk) == (
                lineage.follows,
                revision,
            )
            readings += lineage.fresh if known else lineage.readings
            decided[lineage.chunk] = (lineage.answer, revision)
        return readings

    async def _commit(self, decided: list[tuple[Reading, int]], *, backfill: bool) -> bool:
        """Shape the decided samples and commit them, with their tag state, to the buffer;
        False when the disk refused them (the decider has heard so from the buffer)."""
        if not decided:
            return True
        good_codes = self._decider.good_codes
        messages = self._output.samples(
            self.name,
            [(reading, seq, reading.quality in good_codes) for reading, seq in decided],
            backfill=backfill,
        )
        states: list[TagState] = [(r.name, seq, r.value, r.quality, r.ts_ms) for r, seq in decided]
        if await self._buffer.append(messages, states):
            if self._changes is not None:
                self._changes.add(self.name, decided)
            return True
        self._lost = True
        return False

    def _report_errors(self, errors: dict[str, str]) -> None:
        """Log each failing tag once, not once per read."""
        self.stats.read_errors += len(errors)
        new = {name: reason for name, reason in errors.items() if name not in self._reported_errors}
        if new:
            self._reported_errors.update(new)
            shown = ", ".join(f"{name} ({reason})" for name, reason in list(new.items())[:5])
            more = f" and {len(new) - 5} more" if len(new) > 5 else ""
            log.warning("group %s: cannot read %s%s", self.name, shown, more)
