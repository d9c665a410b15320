"""Which readings become published samples: change detection, deadband, quality policy, seq.

Pure and allocation-light: it runs for every reading of every poll.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from gateway.core.models import Reading, Value

NUMBER_TYPES = (int, float)
"""What a deadband applies to; a bool is not a number here, although Python says so."""


def is_number(value: Value) -> bool:
    """Numbers that a deadband applies to; by exact type, the change detector's hot path
    (values come from JSON: no subclasses, and ``bool`` is one of ``int``)."""
    return type(value) in NUMBER_TYPES


def value_changed(old: Value, new: Value, deadband: float) -> bool:
    """Whether ``new`` differs enough from the last published ``old`` to publish."""
    if is_number(old) and is_number(new):
        old_n, new_n = float(old), float(new)  # type: ignore[arg-type]
        if math.isnan(old_n) or math.isnan(new_n):
            return math.isnan(old_n) != math.isnan(new_n)
        if deadband > 0:
            return abs(new_n - old_n) > deadband
        return new_n != old_n
    return type(old) is not type(new) or old != new


class _Tag:
    """What the decider remembers of one tag, in one object: a change touches one
    dictionary entry and updates it in place. At 100,000 tags the four dictionaries and
    the tuples replaced per change that this was before cost more in cache misses than in
    instructions."""

    __slots__ = (
        "deadband",
        "has_last",
        "quality",
        "seen",
        "seq",
        "stored_last",
        "stored_seq",
        "unstored",
        "value",
    )

    def __init__(self) -> None:
        self.seen: Reading | None = None  # the reading object decided last
        self.deadband = math.nan  # the deadband it was decided with; NaN equals none
        self.has_last = False  # a sample was published (or a bad quality remembered)
        self.value: Value = None  # the last published value
        self.quality = 0  # and quality, or the not-good quality withheld since
        self.seq = 0  # the last seq given, 0 before the first
        self.unstored = False  # decided samples not yet stored; then, as stored last:
        self.stored_last: tuple[Value, int] | None = None  # the sample, None for none
        self.stored_seq = 0  # and its seq

    def rewind(self) -> None:
        """Back to the last stored sample and seq, to be decided afresh."""
        self.unstored = False
        last = self.stored_last
        self.has_last = last is not None
        self.value, self.quality = last if last is not None else (None, 0)
        self.seq = self.stored_seq
        self.seen = None


class SampleDecider:
    """Decides, tag by tag, which readings to publish and with which ``seq``.

    A reading is published when it is the first of its tag, or its quality changed, or its
    value moved past the group's deadband since the last published sample. With
    ``drop_bad`` a not-good reading is never published, but it is remembered, so the next
    good reading of that tag is published even if its value did not change (recovery).

    A decided sample counts as published once the buffer has stored it (``stored``). If
    the disk refused it (``lost``), its tag goes back to what was stored last: the seq is
    given again and the current value is published once the disk takes writes again.
    """

    __slots__ = ("_drop_bad", "_tags", "bad_published", "good_codes", "revision", "withheld")

    def __init__(self, good_codes: Iterable[int], *, drop_bad: bool) -> None:
        self.good_codes = frozenset(good_codes)  # the quality codes that count as good
        self._drop_bad = drop_bad
        self._tags: dict[str, _Tag] = {}
        self.bad_published = 0  # not-good samples published with good = false
        self.withheld = 0  # not-good samples not published (policy "drop")
        # Changes whenever a tag's last decided reading may be set other than by deciding
        # a bulk read's chunks whose lineage the caller follows: restored, rewound, or
        # decided from anything else. A chunk's readings decided under the same revision,
        # still the same objects, need not be decided again.
        self.revision = 0

    def _tag(self, name: str) -> _Tag:
        tag = self._tags.get(name)
        if tag is None:
            tag = self._tags[name] = _Tag()
        return tag

    def restore(
        self,
        seqs: dict[str, int],
        last: dict[str, tuple[Value, int]],
        stamps: dict[str, int] | None = None,
    ) -> None:
        """Continue where a previous run stopped: its seqs and last published samples, and
        their source timestamps, so filling the gap since then never goes back behind
        them."""
        self.revision += 1
        for name, seq in seqs.items():
            self._tag(name).seq = seq
        for name, (value, quality) in last.items():
            tag = self._tag(name)
            tag.has_last, tag.value, tag.quality = True, value, quality
        for name, ts in (stamps or {}).items():
            tag = self._tag(name)
            # NaN never equals a deadband: the reading is decided afresh, not skipped
            tag.seen = Reading(name, tag.value, tag.quality, ts)
            tag.deadband = math.nan

    def stored(self, states: Iterable[tuple[str, int, Value, int, int]]) -> None:
        """The buffer stored these samples (tag, seq, value, quality, ts): they are
        published."""
        tags = self._tags
        for name, seq, value, quality, _ in states:
            tag = tags.get(name)
            if tag is not None and tag.unstored:
                if tag.seq == seq:
                    tag.unstored = False
                else:  # a later sample of the tag is still on its way
                    tag.stored_last, tag.stored_seq = (value, quality), seq

    def lost(self, states: Iterable[tuple[str, int, Value, int, int]]) -> None:
        """The buffer could not store these samples: their tags go back to the last stored
        sample and seq, and their current readings are decided afresh."""
        self.revision += 1
        tags = self._tags
        for name, *_ in states:
            tag = tags.get(name)
            if tag is not None and tag.unstored:  # else rewound already, by an earlier one
                tag.rewind()

    def newer_than_seen(self, reading: Reading) -> bool:
        """Whether ``reading`` is younger than the last one decided for its tag, so that
        filling a gap from the archive never goes back behind what was already decided."""
        tag = self._tags.get(reading.name)
        return tag is None or tag.seen is None or reading.ts_ms > tag.seen.ts_ms

    def current(self, name: str) -> tuple[Value, int, bool] | None:
        """A tag's last published value and quality, and whether that counts as good;
        None before its first sample (for births that declare current values)."""
        tag = self._tags.get(name)
        if tag is None or not tag.has_last:
            return None
        return tag.value, tag.quality, tag.quality in self.good_codes

    def decide(
        self, readings: Iterable[Reading], deadband: float, *, revise: bool = True
    ) -> list[tuple[Reading, int]]:
        """The readings to publish, each with its tag's next seq; updates what was seen.

        A reading that is the very object decided last time, under the same deadband, is
        skipped at once: deciding it again could change nothing. A repeated not-good
        reading is therefore withheld (and counted) once, not once per poll.

        The revision changes unless the caller keeps track of the readings' lineage
        (``revise=False``): a read back after a write, the archive or a subscription may
        decide a tag's reading that a chunk's next answer would not know of.
        """
        if revise:
            self.revision += 1
        out: list[tuple[Reading, int]] = []
        tags = self._tags
        good_codes = self.good_codes
        for reading in readings:
            tag = tags.get(reading.name)
            if tag is None:
                tag = tags[reading.name] = _Tag()
            elif tag.seen is reading and tag.deadband == deadband:
                continue
            tag.seen = reading
            tag.deadband = deadband
            quality = reading.quality
            if (
                tag.has_last
                and tag.quality == quality
                and not value_changed(tag.value, reading.value, deadband)
            ):
                continue
            if quality not in good_codes:
                if self._drop_bad:
                    # Remember the bad quality (not the value) so recovery publishes again.
                    if not tag.has_last:
                        tag.has_last, tag.value = True, None
                    tag.quality = quality
                    self.withheld += 1
                    continue
                self.bad_published += 1
            if not tag.unstored:
                tag.unstored = True
                tag.stored_last = (tag.value, tag.quality) if tag.has_last else None
                tag.stored_seq = tag.seq
            tag.has_last, tag.value, tag.quality = True, reading.value, quality
            tag.seq += 1
            out.append((reading, tag.seq))
        return out
