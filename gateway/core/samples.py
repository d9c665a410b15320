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

    __slots__ = (
        "_drop_bad",
        "_good_codes",
        "_last",
        "_seen",
        "_seq",
        "_unstored",
        "bad_published",
        "withheld",
    )

    def __init__(self, good_codes: Iterable[int], *, drop_bad: bool) -> None:
        self._good_codes = frozenset(good_codes)
        self._drop_bad = drop_bad
        self._last: dict[str, tuple[Value, int]] = {}
        self._seq: dict[str, int] = {}
        # The reading object decided last per tag, and the deadband it was decided with:
        # the client hands out the same object while the tag is unchanged.
        self._seen: dict[str, tuple[Reading, float]] = {}
        # Tags with decided samples not yet stored: their last stored sample and seq.
        self._unstored: dict[str, tuple[tuple[Value, int] | None, int]] = {}
        self.bad_published = 0  # not-good samples published with good = false
        self.withheld = 0  # not-good samples not published (policy "drop")

    def restore(
        self,
        seqs: dict[str, int],
        last: dict[str, tuple[Value, int]],
        stamps: dict[str, int] | None = None,
    ) -> None:
        """Continue where a previous run stopped: its seqs and last published samples, and
        their source timestamps, so filling the gap since then never goes back behind
        them."""
        self._seq.update(seqs)
        self._last.update(last)
        for name, ts in (stamps or {}).items():
            value, quality = last.get(name, (None, 0))
            # NaN never equals a deadband: the reading is decided afresh, not skipped
            self._seen[name] = (Reading(name, value, quality, ts), math.nan)

    def stored(self, states: Iterable[tuple[str, int, Value, int, int]]) -> None:
        """The buffer stored these samples (tag, seq, value, quality, ts): they are
        published."""
        unstored = self._unstored
        for name, seq, value, quality, _ in states:
            if name in unstored:
                if self._seq.get(name) == seq:
                    del unstored[name]
                else:  # a later sample of the tag is still on its way
                    unstored[name] = ((value, quality), seq)

    def lost(self, states: Iterable[tuple[str, int, Value, int, int]]) -> None:
        """The buffer could not store these samples: their tags go back to the last stored
        sample and seq, and their current readings are decided afresh."""
        for name, *_ in states:
            base = self._unstored.pop(name, None)
            if base is None:  # rewound already, with an earlier sample of the same tag
                continue
            last, seq = base
            if last is None:
                self._last.pop(name, None)
            else:
                self._last[name] = last
            if seq:
                self._seq[name] = seq
            else:
                self._seq.pop(name, None)
            self._seen.pop(name, None)

    def newer_than_seen(self, reading: Reading) -> bool:
        """Whether ``reading`` is younger than the last one decided for its tag, so that
        filling a gap from the archive never goes back behind what was already decided."""
        seen = self._seen.get(reading.name)
        return seen is None or reading.ts_ms > seen[0].ts_ms

    def current(self, name: str) -> tuple[Value, int, bool] | None:
        """A tag's last published value and quality, and whether that counts as good;
        None before its first sample (for births that declare current values)."""
        last = self._last.get(name)
        if last is None:
            return None
        return last[0], last[1], last[1] in self._good_codes

    def is_good(self, quality: int) -> bool:
        """Whether a quality code counts as good."""
        return quality in self._good_codes

    def decide(self, readings: Iterable[Reading], deadband: float) -> list[tuple[Reading, int]]:
        """The readings to publish, each with its tag's next seq; updates what was seen.

        A reading that is the very object decided last time, under the same deadband, is
        skipped at once: deciding it again could change nothing. A repeated not-good
        reading is therefore withheld (and counted) once, not once per poll.
        """
        out: list[tuple[Reading, int]] = []
        last_by_name = self._last
        seen_by_name = self._seen
        unstored = self._unstored
        for reading in readings:
            name = reading.name
            seen = seen_by_name.get(name)
            if seen is not None and seen[0] is reading and seen[1] == deadband:
                continue
            seen_by_name[name] = (reading, deadband)
            last = last_by_name.get(name)
            if (
                last is not None
                and last[1] == reading.quality
                and not value_changed(last[0], reading.value, deadband)
            ):
                continue
            if reading.quality not in self._good_codes:
                if self._drop_bad:
                    # Remember the bad quality (not the value) so recovery publishes again.
                    last_by_name[name] = (last[0] if last else None, reading.quality)
                    self.withheld += 1
                    continue
                self.bad_published += 1
            last_by_name[name] = (reading.value, reading.quality)
            previous = self._seq.get(name, 0)
            if name not in unstored:
                unstored[name] = (last, previous)
            seq = previous + 1
            self._seq[name] = seq
            out.append((reading, seq))
        return out
