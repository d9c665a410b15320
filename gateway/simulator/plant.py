"""The simulated plant behind the simulator: tags, values, alarms and history, without I/O.

Every method takes the time as ``now_ms`` so tests drive the plant step by step and a seed
makes a run repeatable. The tables are parallel lists indexed by tag number rather than an
object per tag, and history rings are compact arrays allocated on a tag's first change, so
100,000 tags fit in a few tens of megabytes.
"""

from __future__ import annotations

import math
import random
from array import array
from collections.abc import Callable, MutableSequence
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.core.models import Alarm, Reading, TagInfo, TagType, Value
from gateway.core.timestamps import format_ts

ROOT = "System1"
GOOD = 128
# Bad codes (bits 7-6 = 00): the device delivers no new value, so the old one is kept.
BAD_CODES = (0x00, 0x04, 0x08, 0x0C, 0x18, 0x1C)
# Uncertain codes (bits 7-6 = 01): a value arrives but may be off.
UNCERTAIN_CODES = (0x40, 0x44, 0x50, 0x54)
NOT_GOOD_CODES = BAD_CODES + UNCERTAIN_CODES

DEVICES_PER_KIND = 10  # per area: Tank1..Tank10, Pump1..Pump10, ...
HOT_FACTOR = 10.0  # alarm-linked tags change this many times more often than the rest
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
MAX_STRING = 255
ALARM_ID_BASE = 1001


class PlantError(Exception):
    """A request the plant refuses; the message is the API's ``error`` text."""


class UnknownTagError(PlantError):
    """No tag of that name."""


class ReadOnlyError(PlantError):
    """The tag cannot be written."""


class TypeMismatchError(PlantError):
    """The value does not fit the tag's type."""


class UnknownAlarmError(PlantError):
    """No alarm of that id, or it is not active any more."""


@dataclass(frozen=True, slots=True)
class _AlarmPoint:
    """A limit on a signal that raises an alarm: ``high`` means value above ``limit``."""

    text: str
    limit: float
    high: bool
    priority: int


@dataclass(frozen=True, slots=True)
class Signal:
    """One kind of tag of a device, shared by every tag of that kind."""

    name: str
    type: TagType
    writable: bool
    low: float = 0.0
    high: float = 100.0
    drifts: bool = True  # setpoints and operating modes change only when written
    choices: tuple[str, ...] = ()
    wave: tuple[float, float] = (0.0, 0.0)  # centre and amplitude while it drives alarms
    alarms: tuple[_AlarmPoint, ...] = ()


_DEVICES: tuple[tuple[str, tuple[Signal, ...]], ...] = (
    (
        "Tank",
        (
            Signal(
                "Level",
                TagType.FLOAT,
                writable=False,
                wave=(50.0, 48.0),
                alarms=(
                    _AlarmPoint("High level", 90.0, high=True, priority=8),
                    _AlarmPoint("Low level", 10.0, high=False, priority=5),
                ),
            ),
            Signal("Setpoint", TagType.FLOAT, writable=True, drifts=False),
            Signal(
                "Temperature",
                TagType.FLOAT,
                writable=False,
                high=120.0,
                wave=(60.0, 30.0),
                alarms=(_AlarmPoint("High temperature", 80.0, high=True, priority=10),),
            ),
        ),
    ),
    (
        "Pump",
        (
            Signal(
                "Speed",
                TagType.FLOAT,
                writable=False,
                high=3000.0,
                wave=(1800.0, 1100.0),
                alarms=(_AlarmPoint("Overspeed", 2700.0, high=True, priority=12),),
            ),
            Signal("Running", TagType.BOOL, writable=True),
            Signal("Starts", TagType.INT, writable=False, high=500.0),
            Signal("Current", TagType.FLOAT, writable=False, high=50.0),
        ),
    ),
    (
        "Valve",
        (
            Signal("Position", TagType.INT, writable=True),
            Signal("Mode", TagType.STRING, writable=True, drifts=False, choices=("auto", "manual")),
            Signal("Open", TagType.BOOL, writable=False),
        ),
    ),
    (
        "Meter",
        (
            Signal("Flow", TagType.FLOAT, writable=False, high=500.0),
            Signal("Total", TagType.INT, writable=False, high=100_000.0),
            Signal(
                "Status", TagType.STRING, writable=False, choices=("ok", "maintenance", "fault")
            ),
        ),
    ),
)

_COUNTERS = frozenset({"Starts", "Total"})  # int signals that only ever count up
JSON_TAILS_KEPT = 4096  # encoded item tails kept for reuse, at most
_TYPE_JSON = {tag_type: b',"type":' + orjson.dumps(tag_type) + b"}" for tag_type in TagType}


Layout = tuple[list[str], list[Signal], dict[str, list[str]]]
"""Tag names in browse order, their signals, and every folder with its children's names."""


def tag_layout(count: int) -> Layout:
    """The first ``count`` tags of the endless hierarchy in browse order: names, signals,
    and every folder (``""`` is the root) with its direct children's full names.
    """
    names: list[str] = []
    signals: list[Signal] = []
    areas: list[str] = []
    folders: dict[str, list[str]] = {"": [ROOT], ROOT: areas}
    area_number = 0
    while len(names) < count:
        area_number += 1
        area = f"{ROOT}.Area{area_number}"
        devices: list[str] = []
        areas.append(area)
        folders[area] = devices
        for number in range(1, DEVICES_PER_KIND + 1):
            for kind, kind_signals in _DEVICES:
                device = f"{area}.{kind}{number}"
                tags: list[str] = []
                devices.append(device)
                folders[device] = tags
                for signal in kind_signals:
                    name = f"{device}.{signal.name}"
                    tags.append(name)
                    names.append(name)
                    signals.append(signal)
                    if len(names) == count:
                        return names, signals, folders
    return names, signals, folders


def alarm_capacity(tags: int) -> int:
    """How many alarms ``tags`` tags can carry (one per limit of a limit-watched signal)."""
    return sum(len(signal.alarms) for signal in tag_layout(tags)[1])


class _Ring:
    """The last ``capacity`` changes of one tag in typed arrays (at most 17 bytes a change).

    Entries have absolute sequence numbers that survive overwriting, which is what a
    history cursor points at.
    """

    __slots__ = ("_capacity", "_head", "_quality", "_ts", "_values", "appended")

    def __init__(self, capacity: int, tag_type: TagType) -> None:
        self._capacity = capacity
        self._head = 0  # physical index of the oldest entry once the ring is full
        self._ts: array[int] = array("q")
        self._quality = bytearray()
        self._values: MutableSequence[Any]
        if tag_type is TagType.FLOAT:
            self._values = array("d")
        elif tag_type is TagType.INT:
            self._values = array("i")  # int tags hold 32-bit values
        elif tag_type is TagType.BOOL:
            self._values = array("b")
        else:
            self._values = []
        self.appended = 0

    def __len__(self) -> int:
        return len(self._ts)

    @property
    def first_seq(self) -> int:
        """Sequence number of the oldest entry kept."""
        return self.appended - len(self._ts)

    def append(self, ts_ms: int, value: Value, quality: int) -> None:
        """Record a change, overwriting the oldest when full."""
        if len(self._ts) < self._capacity:
            self._ts.append(ts_ms)
            self._values.append(value)
            self._quality.append(quality)
        else:
            head = self._head
            self._ts[head] = ts_ms
            self._values[head] = value
            self._quality[head] = quality
            self._head = (head + 1) % self._capacity
        self.appended += 1

    def entry(self, logical: int) -> tuple[int, Any, int]:
        """The entry ``logical`` places after the oldest: (ts, stored value, quality)."""
        physical = (self._head + logical) % len(self._ts)
        return self._ts[physical], self._values[physical], self._quality[physical]

    def bisect(self, ts_ms: int, *, right: bool) -> int:
        """Logical index of the first entry later than (right) or not before ``ts_ms``."""
        lo, hi = 0, len(self._ts)
        size, head, stamps = hi, self._head, self._ts
        while lo < hi:
            mid = (lo + hi) // 2
            stamp = stamps[(head + mid) % size]
            if stamp < ts_ms or (right and stamp == ts_ms):
                lo = mid + 1
            else:
                hi = mid
        return lo


class SimAlarm:
    """One alarm definition and its current WinCC state.

    Lifecycle as in WinCC: inactive -> came -> went; a went alarm stays listed until it is
    acknowledged, an acknowledged came alarm disappears when it goes.
    """

    __slots__ = (
        "acked",
        "acked_at",
        "active",
        "came_at",
        "hysteresis",
        "id",
        "point",
        "tag",
        "tag_index",
        "went_at",
    )

    def __init__(
        self, alarm_id: str, tag: str, tag_index: int, point: _AlarmPoint, span: float
    ) -> None:
        self.id = alarm_id
        self.tag = tag
        self.tag_index = tag_index
        self.point = point
        self.hysteresis = span * 0.02
        self.active = False
        self.acked = False
        self.came_at: int | None = None
        self.went_at: int | None = None
        self.acked_at: int | None = None

    @property
    def text(self) -> str:
        """The message text, naming the device like a WinCC alarm line does."""
        return f"{self.tag.rsplit('.', 1)[0]}: {self.point.text}"

    @property
    def state(self) -> str:
        """``came`` while the limit is violated, ``went`` after."""
        return "came" if self.went_at is None else "went"

    def snapshot(self) -> Alarm:
        """The alarm as the API reports it."""
        return Alarm(
            id=self.id,
            tag=self.tag,
            text=self.text,
            priority=self.point.priority,
            state=self.state,
            acked=self.acked,
            came_at=self.came_at,
            went_at=self.went_at,
            acked_at=self.acked_at,
        )


class Plant:
    """Tags that change over time, alarms raised by their limits, and their history."""

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
        if tags < 1:
            raise ValueError("the plant needs at least one tag")
        if history_depth < 1:
            raise ValueError("history depth must be at least 1")
        self.names, self._signals, self._folders = layout or tag_layout(tags)
        capacity = sum(len(signal.alarms) for signal in self._signals)
        if not 0 <= alarms <= capacity:
            raise ValueError(f"{tags} tags carry at most {capacity} alarms, not {alarms}")
        # Listeners of an API that pushes changes: (tag number, value, quality, ts_ms) after
        # every change, and an alarm after every transition or acknowledgement.
        self.on_change: Callable[[int, Value, int, int], None] | None = None
        self.on_alarm: Callable[[SimAlarm], None] | None = None
        self._rng = random.Random(seed)
        self._history_depth = history_depth
        self.index: dict[str, int] = {name: i for i, name in enumerate(self.names)}
        self._values: list[Value] = [self._initial(signal) for signal in self._signals]
        self._quality: list[int] = [GOOD] * tags
        self._ts: list[int] = [now_ms] * tags
        self._last_text = (now_ms, format_ts(now_ms))  # most changes of a step share one ms
        self._ts_text: list[str | None] = [self._last_text[1]] * tags
        self._encoded: list[bytes | None] = [None] * tags  # item() as JSON until it changes
        self._json_heads = [b'{"name":' + orjson.dumps(name) for name in self.names]
        # the JSON after the name, by (value, quality, type, timestamp text)
        self._json_tails: dict[tuple[Value, int, TagType, str], bytes] = {}
        self._history: list[_Ring | None] = [None] * tags
        self._drifting = array("l", (i for i, s in enumerate(self._signals) if s.drifts))

        self.alarms: dict[str, SimAlarm] = {}
        self._alarms_of: dict[int, list[SimAlarm]] = {}
        self._waves: dict[int, tuple[float, float]] = {}  # tag -> (period s, phase)
        for i, signal in enumerate(self._signals):
            for point in signal.alarms:
                if len(self.alarms) == alarms:
                    break
                alarm = SimAlarm(
                    str(ALARM_ID_BASE + len(self.alarms)),
                    self.names[i],
                    i,
                    point,
                    signal.high - signal.low,
                )
                self.alarms[alarm.id] = alarm
                self._alarms_of.setdefault(i, []).append(alarm)
                self._waves.setdefault(
                    i, (self._rng.uniform(20.0, 50.0), self._rng.uniform(0.0, math.tau))
                )
        self._hot = list(self._waves)
        self.alarm_transitions = 0
        for i in self._hot:  # start on the wave, so the first change is no jump
            value = self._values[i] = self._wave_value(i, now_ms)
            for alarm in self._alarms_of[i]:
                self._evaluate(alarm, value, now_ms)

        self._last_step_ms = now_ms
        self._carry = 0.0  # fractional changes owed from earlier steps
        self.changes = 0
        self.changes_good = 0
        self.skipped_s = 0.0  # plant time skipped because the steps fell behind

    # --- reading -------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.names)

    def item(self, i: int) -> dict[str, object]:
        """The API's reading object of tag number ``i``."""
        text = self._ts_text[i]
        if text is None:
            text = self._text(i)
        return {
            "name": self.names[i],
            "value": self._values[i],
            "quality": self._quality[i],
            "timestamp": text,
            "type": self._signals[i].type,
        }

    def _text(self, i: int) -> str:
        """The timestamp text of tag ``i``, formatted once for all the changes of a step."""
        ts_ms = self._ts[i]
        last_ms, text = self._last_text
        if ts_ms != last_ms:
            text = format_ts(ts_ms)
            self._last_text = (ts_ms, text)
        self._ts_text[i] = text
        return text

    def item_json(self, i: int) -> bytes:
        """``item(i)`` as JSON, byte for byte as orjson writes it, kept until the tag
        changes: the hot path of bulk reads, where most tags come back unchanged poll after
        poll. The changes of one step share their timestamp, and many their value too, so
        what follows the name is encoded once for all of them."""
        encoded = self._encoded[i]
        if encoded is not None:
            return encoded
        value, quality, text = self._values[i], self._quality[i], self._ts_text[i]
        if text is None:
            text = self._text(i)
        tails = self._json_tails
        tag_type = self._signals[i].type
        key = (value, quality, tag_type, text)  # the type tells 1 from 1.0 from True
        tail = tails.get(key)
        if tail is None:
            if len(tails) >= JSON_TAILS_KEPT:
                tails.clear()
            tail = tails[key] = b"".join(
                (
                    b',"value":',
                    orjson.dumps(value),
                    b',"quality":%d,"timestamp":' % quality,
                    orjson.dumps(text),
                    _TYPE_JSON[tag_type],
                )
            )
        encoded = self._encoded[i] = self._json_heads[i] + tail
        return encoded

    def reading(self, name: str) -> Reading:
        """The current value of a tag."""
        i = self._lookup(name)
        return Reading(name, self._values[i], self._quality[i], self._ts[i])

    def tag_type(self, name: str) -> TagType:
        """The data type of a tag."""
        return self._signals[self._lookup(name)].type

    def history(
        self, name: str, *, start_ms: int, end_ms: int, limit: int, cursor: int | None = None
    ) -> tuple[list[Reading], int | None]:
        """Recorded changes in [start, end], oldest first, at most ``limit``.

        ``cursor`` is the sequence number to continue from (the second item returned, None
        at the end); if those entries were overwritten meanwhile, paging resumes at the
        oldest one kept.
        """
        i = self._lookup(name)
        ring = self._history[i]
        if ring is None:
            return [], None
        lo = ring.bisect(start_ms, right=False)
        hi = ring.bisect(end_ms, right=True)
        if cursor is not None:
            lo = max(lo, cursor - ring.first_seq)
        stop = min(hi, lo + limit)
        tag_type = self._signals[i].type
        page = []
        for logical in range(lo, stop):
            ts_ms, stored, quality = ring.entry(logical)
            value = bool(stored) if tag_type is TagType.BOOL else stored
            page.append(Reading(name, value, quality, ts_ms))
        return page, (ring.first_seq + stop if stop < hi else None)

    def history_length(self, name: str) -> int:
        """How many changes of the tag are kept."""
        ring = self._history[self._lookup(name)]
        return 0 if ring is None else len(ring)

    def browse(self, path: str) -> list[TagInfo]:
        """The children of a folder; ``""`` is the root. Raises ``UnknownTagError``."""
        key = path.removesuffix(".")
        children = self._folders.get(key)
        if children is None:
            raise UnknownTagError(f"no folder {path!r}")
        infos = []
        for child in children:
            i = self.index.get(child)
            if i is None:
                infos.append(TagInfo(child, None, has_children=True, writable=False))
            else:
                signal = self._signals[i]
                infos.append(
                    TagInfo(child, signal.type, has_children=False, writable=signal.writable)
                )
        return infos

    def active_alarms(self) -> list[Alarm]:
        """Alarms that came and are not both gone and acknowledged, oldest first."""
        active = [alarm.snapshot() for alarm in self.alarms.values() if alarm.active]
        active.sort(key=lambda alarm: (alarm.came_at or 0, alarm.id))
        return active

    # --- changing ------------------------------------------------------------------------

    def step(
        self,
        now_ms: int,
        *,
        change_rate: float,
        bad_quality: float = 0.0,
        catch_up_s: float | None = None,
    ) -> int:
        """Advance the plant to ``now_ms``; returns how many changes were made.

        On average ``change_rate * tags`` changes a second: alarm-linked tags take their
        share at ``HOT_FACTOR`` times the base rate, so every minute sees alarm
        transitions, and the rest is spread over the tags that drift.

        ``catch_up_s`` bounds the plant time one step makes up. When computing the
        changes costs more CPU than there is, each step would otherwise take longer than
        the last; beyond the bound the plant skips ahead (``skipped_s`` adds it up).
        """
        elapsed = max(0, now_ms - self._last_step_ms) / 1000.0
        self._last_step_ms = max(now_ms, self._last_step_ms)
        if change_rate <= 0.0 or elapsed == 0.0:
            return 0
        if catch_up_s is not None and elapsed > catch_up_s:
            self.skipped_s += elapsed - catch_up_s
            elapsed = catch_up_s
        rng = self._rng
        made = 0
        hot_rate = change_rate * HOT_FACTOR
        hot_chance = min(1.0, hot_rate * elapsed)
        for i in self._hot:
            if rng.random() < hot_chance:
                self._change(i, now_ms, bad_quality)
                made += 1
        if self._drifting:
            budget = max(0.0, change_rate * len(self.names) - hot_rate * len(self._hot))
            self._carry += budget * elapsed
            count = int(self._carry)
            self._carry -= count
            self._drift(count, now_ms, bad_quality)
            made += count
        return made

    def _drift(self, count: int, now_ms: int, bad_quality: float) -> None:
        """Make ``count`` changes, each on a drifting tag drawn at random."""
        rng, drifting = self._rng, self._drifting
        for _ in range(count):
            self._change(drifting[rng.randrange(len(drifting))], now_ms, bad_quality)

    def force(self, name: str, value: Value, *, now_ms: int, quality: int = GOOD) -> Reading:
        """Set a tag as the process would (any quality, read-only tags too), recording history.

        The value is still checked against the tag's type, as the archive stores it typed.
        """
        i = self._lookup(name)
        coerced = _coerce(value, self._signals[i].type)
        self._set(i, coerced, quality, now_ms)
        return Reading(name, coerced, quality, now_ms)

    def write(self, name: str, value: object, *, now_ms: int) -> Reading:
        """An operator write: checked against the tag's type and write permission."""
        i = self._lookup(name)
        signal = self._signals[i]
        if not signal.writable:
            raise ReadOnlyError(f"data point {name} is read-only")
        coerced = _coerce(value, signal.type)
        self._set(i, coerced, GOOD, now_ms)
        return Reading(name, coerced, GOOD, now_ms)

    def acknowledge(self, alarm_id: str, *, now_ms: int) -> Alarm:
        """Acknowledge an active alarm; a went alarm disappears with it."""
        alarm = self.alarms.get(alarm_id)
        if alarm is None or not alarm.active:
            raise UnknownAlarmError(f"no active alarm {alarm_id}")
        if not alarm.acked:
            alarm.acked = True
            alarm.acked_at = now_ms
            self.alarm_transitions += 1
            if alarm.went_at is not None:
                alarm.active = False
            if self.on_alarm is not None:
                self.on_alarm(alarm)
        return alarm.snapshot()

    def raise_alarm(self, alarm_id: str, *, now_ms: int) -> None:
        """Drive the alarm's tag past its limit, so the alarm comes."""
        alarm = self._alarm(alarm_id)
        signal = self._signals[alarm.tag_index]
        target = signal.high if alarm.point.high else signal.low
        self._set(alarm.tag_index, target, GOOD, now_ms)

    def clear_alarm(self, alarm_id: str, *, now_ms: int) -> None:
        """Drive the alarm's tag back between all its limits, so its alarms go."""
        alarm = self._alarm(alarm_id)
        signal = self._signals[alarm.tag_index]
        self._set(alarm.tag_index, (signal.low + signal.high) / 2, GOOD, now_ms)

    # --- internals -----------------------------------------------------------------------

    def _lookup(self, name: str) -> int:
        i = self.index.get(name)
        if i is None:
            raise UnknownTagError(f"unknown data point {name}")
        return i

    def _alarm(self, alarm_id: str) -> SimAlarm:
        alarm = self.alarms.get(alarm_id)
        if alarm is None:
            raise UnknownAlarmError(f"no alarm {alarm_id}")
        return alarm

    def _initial(self, signal: Signal) -> Value:
        rng = self._rng
        if signal.type is TagType.FLOAT:
            return round(rng.uniform(signal.low, signal.high), 2)
        if signal.type is TagType.INT:
            return rng.randint(int(signal.low), int(signal.high))
        if signal.type is TagType.BOOL:
            return rng.random() < 0.5
        return signal.choices[0]

    def _wave_value(self, i: int, now_ms: int) -> float:
        """Alarm-linked tags swing across their limits like a tank filling and draining."""
        signal = self._signals[i]
        centre, amplitude = signal.wave
        period, phase = self._waves[i]
        value = centre + amplitude * math.sin(math.tau * now_ms / 1000.0 / period + phase)
        value += self._rng.gauss(0.0, amplitude * 0.02)
        return round(min(signal.high, max(signal.low, value)), 2)

    def _next_value(self, i: int, now_ms: int) -> Value:
        if i in self._waves:
            return self._wave_value(i, now_ms)
        signal = self._signals[i]
        old = self._values[i]
        rng = self._rng
        if signal.type is TagType.BOOL:
            return not old
        if signal.type is TagType.STRING:
            return rng.choice([c for c in signal.choices if c != old] or [signal.choices[0]])
        assert isinstance(old, int | float)
        span = signal.high - signal.low
        if signal.type is TagType.INT:
            if signal.name in _COUNTERS:
                return min(INT32_MAX, int(old) + rng.randint(1, 5))
            step = max(1, round(span * 0.05))
            return min(int(signal.high), max(int(signal.low), int(old) + rng.randint(-step, step)))
        drifted = float(old) + rng.gauss(0.0, span * 0.03)
        return round(min(signal.high, max(signal.low, drifted)), 2)

    def _change(self, i: int, now_ms: int, bad_quality: float) -> None:
        quality = GOOD
        if bad_quality > 0.0 and self._rng.random() < bad_quality:
            quality = self._rng.choice(NOT_GOOD_CODES)
        # a bad code means no new value arrived: the old one stays, only quality changes
        value = self._values[i] if quality < 0x40 else self._next_value(i, now_ms)
        self._set(i, value, quality, now_ms)

    def _set(self, i: int, value: Value, quality: int, now_ms: int) -> None:
        self._values[i] = value
        self._quality[i] = quality
        self._ts[i] = now_ms
        self._ts_text[i] = None  # formatted on the next read
        self._encoded[i] = None
        ring = self._history[i]
        if ring is None:
            ring = self._history[i] = _Ring(self._history_depth, self._signals[i].type)
        ring.append(now_ms, value, quality)
        self.changes += 1
        if quality == GOOD:
            self.changes_good += 1
        if self.on_change is not None:
            self.on_change(i, value, quality, now_ms)
        for alarm in self._alarms_of.get(i, ()):
            if isinstance(value, int | float):
                self._evaluate(alarm, float(value), now_ms)

    def _evaluate(self, alarm: SimAlarm, value: float, now_ms: int) -> None:
        point = alarm.point
        violated = value > point.limit if point.high else value < point.limit
        cleared = (
            value < point.limit - alarm.hysteresis
            if point.high
            else value > point.limit + alarm.hysteresis
        )
        if violated and (not alarm.active or alarm.went_at is not None):
            alarm.active = True
            alarm.came_at = now_ms
            alarm.went_at = None
            alarm.acked = False
            alarm.acked_at = None
        elif cleared and alarm.active and alarm.went_at is None:
            alarm.went_at = now_ms
            alarm.active = not alarm.acked
        else:
            return
        self.alarm_transitions += 1
        if self.on_alarm is not None:
            self.on_alarm(alarm)


def _coerce(value: object, tag_type: TagType) -> Value:
    """The value as the tag stores it, or ``TypeMismatchError``; bool is never a number."""
    if tag_type is TagType.BOOL:
        if type(value) is bool:
            return value
        raise TypeMismatchError("expected a boolean")
    if tag_type is TagType.STRING:
        if not isinstance(value, str):
            raise TypeMismatchError("expected a string")
        if len(value) > MAX_STRING:
            raise TypeMismatchError(f"string longer than {MAX_STRING} characters")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeMismatchError(f"expected a number ({tag_type})")
    if isinstance(value, float) and not math.isfinite(value):
        raise TypeMismatchError("expected a finite number")
    if tag_type is TagType.FLOAT:
        try:
            return float(value)
        except OverflowError as exc:
            raise TypeMismatchError("number out of range") from exc
    if isinstance(value, float) and not value.is_integer():
        raise TypeMismatchError("expected a whole number")
    whole = int(value)
    if not INT32_MIN <= whole <= INT32_MAX:
        raise TypeMismatchError("integer out of the 32-bit range")
    return whole
