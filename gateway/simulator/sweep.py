"""A plant cheap enough to drive a gateway at its ceiling: the drifting tags change in turn.

``Plant`` draws every change at random and computes a plausible next value, a few
microseconds each: past about 50,000 changes a second that takes a whole core, and the
simulator, not the gateway, sets the rate. ``SweepPlant`` makes the same number of changes
(``change_rate`` per tag and second, the alarm-linked tags as in ``Plant``), but walks a
cursor round the drifting tags and takes each new value from a counter, so a change costs
a few list stores and its history entry. At one change per tag and second every drifting
tag changes once between two 1 s scans: a scan finds nearly every tag changed.

What a reader sees keeps its shape: values of the tag's type, good quality (or the
``bad_quality`` share), the change's timestamp and its history entry. Only the values stop
looking like a process: floats and ints count up, bools toggle, strings cycle.
"""

from __future__ import annotations

from array import array

from gateway.core.models import TagType, Value
from gateway.core.timestamps import format_ts
from gateway.simulator.plant import GOOD, INT32_MAX, NOT_GOOD_CODES, Layout, Plant, _Ring

_FLOAT, _INT, _BOOL, _STRING = range(4)
_KINDS = {TagType.FLOAT: _FLOAT, TagType.INT: _INT, TagType.BOOL: _BOOL}


class SweepPlant(Plant):
    """``Plant`` whose drifting tags change in turn, with counter values."""

    def __init__(
        self,
        tags: int,
        alarms: int = 20,
        *,
        now_ms: int,
        seed: int | None = None,
        history_depth: int = 1000,
        layout: Layout | None = None,
    ) -> None:
        super().__init__(
            tags, alarms, now_ms=now_ms, seed=seed, history_depth=history_depth, layout=layout
        )
        hot = set(self._hot)  # they follow their wave, changed by ``step`` itself
        self._order = array("l", (i for i in self._drifting if i not in hot))
        self._kinds = bytes(_KINDS.get(self._signals[i].type, _STRING) for i in self._order)
        self._cursor = 0
        self._counter = 0

    def _drift(self, count: int, now_ms: int, bad_quality: float) -> None:
        """Change the next ``count`` tags of the sweep to the counter's next value."""
        order, kinds = self._order, self._kinds
        if not order:
            super()._drift(count, now_ms, bad_quality)
            return
        self._counter = counter = self._counter % INT32_MAX + 1
        as_float = float(counter)
        values, quality, stamps, texts = self._values, self._quality, self._ts, self._ts_text
        encoded, history, signals = self._encoded, self._history, self._signals
        depth, on_change, rng = self._history_depth, self.on_change, self._rng
        text = format_ts(now_ms)
        good = count
        position = self._cursor
        size = len(order)
        for _ in range(count):
            i = order[position]
            kind = kinds[position]
            position += 1
            if position == size:
                position = 0
            if kind == _FLOAT:
                value: Value = as_float
            elif kind == _INT:
                value = counter
            elif kind == _BOOL:
                value = not values[i]
            else:
                value = _next_choice(signals[i].choices, values[i])
            code = GOOD
            if bad_quality and rng.random() < bad_quality:
                code = rng.choice(NOT_GOOD_CODES)
                good -= 1
                if code < 0x40:  # a bad code brings no new value: the old one stays
                    value = values[i]
            values[i] = value
            quality[i] = code
            stamps[i] = now_ms
            texts[i] = text
            encoded[i] = None
            ring = history[i]
            if ring is None:
                ring = history[i] = _Ring(depth, signals[i].type)
            ring.append(now_ms, value, code)
            if on_change is not None:
                on_change(i, value, code, now_ms)
        self._cursor = position
        self.changes += count
        self.changes_good += good


def _next_choice(choices: tuple[str, ...], old: Value) -> str:
    """The choice after ``old``, round and round; the first for a value written from outside."""
    if old in choices:
        return choices[(choices.index(str(old)) + 1) % len(choices)]
    return choices[0]
