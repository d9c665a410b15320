"""What happened last, kept in memory for the status page: published changes, commands.

Both are bounded rings. The changes ring sits on the hot path (tens of thousands of
samples a second), so a sink hands it each committed batch whole, one ``append`` per
batch; the work of picking the newest changes (and of matching a tag filter) is done
only when a status page asks, once a second.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from gateway.core.models import Reading, Value
from gateway.core.timestamps import now_ms

KEPT_SAMPLES = 20_000
"""Samples kept (whole batches, the oldest dropped beyond this), and the most one request
for the newest changes looks at: a few polls of a large plant, bounded memory."""
COMMANDS_KEPT = 50
"""Commands kept with their results."""


@dataclass(slots=True, frozen=True)
class Change:
    """One published sample, as the status page lists it."""

    group: str
    tag: str
    value: Value
    quality: int
    ts_ms: int


class RecentChanges:
    """The newest published samples, as batches; cheap to feed, searched on demand."""

    def __init__(self, kept: int = KEPT_SAMPLES) -> None:
        self._batches: deque[tuple[str, Sequence[tuple[Reading, int]]]] = deque()
        self._kept = kept
        self._held = 0  # samples in the batches held

    def add(self, group: str, decided: Sequence[tuple[Reading, int]]) -> None:
        """A sink committed ``decided`` (readings with their seqs): remember the batch,
        forget the oldest ones the newer ones make unnecessary."""
        if not decided:
            return
        batches = self._batches
        batches.append((group, decided))
        self._held += len(decided)
        while self._held - len(batches[0][1]) >= self._kept:
            self._held -= len(batches.popleft()[1])

    def newest(self, limit: int, tag_filter: str = "") -> list[Change]:
        """Up to ``limit`` changes, newest first, whose tag contains ``tag_filter``
        (case-insensitive); looks at no more than the samples it keeps."""
        needle = tag_filter.casefold()
        found: list[Change] = []
        for group, reading in self._walk():
            if needle and needle not in reading.name.casefold():
                continue
            found.append(Change(group, reading.name, reading.value, reading.quality, reading.ts_ms))
            if len(found) >= limit:
                break
        return found

    def _walk(self) -> Iterator[tuple[str, Reading]]:
        seen = 0
        for group, decided in reversed(self._batches):
            for reading, _seq in reversed(decided):
                yield group, reading
                seen += 1
                if seen >= self._kept:
                    return


@dataclass(slots=True, frozen=True)
class CommandRecord:
    """One command as the audit saw it: the sender's id is as claimed, not verified."""

    at_ms: int
    kind: str
    target: str
    request_id: str | None
    sender: str | None
    outcome: str
    error: str | None


class RecentCommands:
    """The last commands with their results, newest last."""

    def __init__(self, kept: int = COMMANDS_KEPT) -> None:
        self._records: deque[CommandRecord] = deque(maxlen=kept)

    def add(
        self,
        *,
        kind: str,
        target: str,
        request_id: str | None,
        sender: str | None,
        outcome: str,
        error: str | None,
    ) -> None:
        """Remember one audited command."""
        self._records.append(
            CommandRecord(now_ms(), kind, target, request_id, sender, outcome, error)
        )

    def newest(self) -> list[CommandRecord]:
        """The commands kept, newest first."""
        return list(reversed(self._records))
