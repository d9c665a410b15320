"""The domain's plain data: what a source reads, and what every layer after it passes on.

They live in the core, not beside a client, so the pipeline, the buffer and the output
depend on no source. They sit on the hot path (tens of thousands of readings a second),
so they are slotted dataclasses and named tuples, not pydantic models.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import partial
from typing import Any, NamedTuple

Value = bool | int | float | str | None | list[Any] | dict[str, Any]
"""A tag's value as JSON gives it: a list or an object only for tags of a type the gateway
does not know, published as they come (their size and depth are bounded when read)."""


class TagType(StrEnum):
    """Data type of a tag as the gateway knows it; ``UNKNOWN`` for any other type a server
    names: such tags are polled and published as they come, never written."""

    FLOAT = "float"
    INT = "int"
    BOOL = "bool"
    STRING = "string"
    UNKNOWN = "unknown"


_TYPE_NAMES: dict[str, TagType] = {
    **dict.fromkeys(
        ("float", "real", "lreal", "double", "single", "float32", "float64", "decimal", "number"),
        TagType.FLOAT,
    ),
    **dict.fromkeys(
        (
            *("int", "integer", "sint", "usint", "int8", "uint8", "byte", "short", "ushort"),
            *("int16", "uint16", "int32", "uint32", "int64", "uint64", "uint", "dint", "udint"),
            *("lint", "ulint", "long", "ulong", "word", "dword", "lword"),
        ),
        TagType.INT,
    ),
    **dict.fromkeys(("bool", "boolean", "bit", "binary"), TagType.BOOL),
    **dict.fromkeys(
        ("string", "text", "wstring", "char", "wchar", "text8", "text16"), TagType.STRING
    ),
}
FOLDER_TYPES = frozenset({"", "folder", "struct", "structure", "object", "node", "udt"})
"""Type names that servers give to nodes that hold tags rather than values."""


def tag_type_of(name: object) -> TagType | None:
    """The tag type a server's type name stands for, in any case; None for a folder (no
    type at all included), ``UNKNOWN`` for any other name."""
    if name is None:
        return None
    if not isinstance(name, str):
        return TagType.UNKNOWN
    folded = name.strip().lower()
    if folded in FOLDER_TYPES:
        return None
    return _TYPE_NAMES.get(folded, TagType.UNKNOWN)


class AlarmList(list["Alarm"]):
    """The active alarms of one poll, and the ids of those listed that could not be read,
    with why: their last known state stands rather than being taken for cleared."""

    def __init__(self, alarms: list[Alarm] | None = None) -> None:
        super().__init__(alarms or [])
        self.errors: dict[str, str] = {}


class Reading(NamedTuple):
    """One sample of one tag: ``ts_ms`` is the WinCC source timestamp, epoch milliseconds.

    A named tuple: immutable like a frozen dataclass, but built in C, which matters at
    tens of thousands of readings a second.
    """

    name: str
    value: Value
    quality: int
    ts_ms: int


new_reading: Callable[[tuple[str, Value, int, int]], Reading] = partial(tuple.__new__, Reading)
"""``new_reading((name, value, quality, ts_ms))`` is ``Reading(name, value, quality, ts_ms)``
without the named tuple's ``__new__`` written in Python: a third of the cost, for the
readings decoded from every changed item of an answer."""


@dataclass(slots=True, frozen=True)
class Lineage:
    """Where the readings of one chunk of a bulk read come from, so that what did not
    change need not be decided again.

    ``answer`` numbers the source's answer for the ``chunk`` of names (unique in the
    process). When it ``follows`` an earlier answer for the same names, only the
    ``fresh`` readings are new objects: every other one of the chunk's ``readings`` is
    the very object that answer gave for its tag.
    """

    chunk: tuple[str, int]
    answer: int
    readings: list[Reading]
    follows: int | None = None
    fresh: list[Reading] = field(default_factory=list)


@dataclass(slots=True)
class ReadResult:
    """Outcome of a bulk read: the readings, and the names that failed with the reason;
    with a ``Lineage`` per chunk when the source tells what changed since its last
    answer for each (None when any chunk cannot tell; not part of what a result equals)."""

    readings: list[Reading] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    lineages: list[Lineage] | None = field(default=None, compare=False)

    def mark_missing(self, names: Sequence[str], wanted: set[str]) -> None:
        """Make every name asked for that the answer neither read nor refused an error:
        a tag the server left out is never silently skipped."""
        answered = {reading.name for reading in self.readings}  # listed twice counts once
        if len(answered) + len(self.errors) == len(wanted):
            return
        answered.update(self.errors)
        for name in names:
            if name not in answered:
                self.errors[name] = "missing from the server's answer"


@dataclass(slots=True, frozen=True)
class TagInfo:
    """A node of the browse tree: a tag (``type`` set) or a folder (``has_children``)."""

    name: str
    type: TagType | None
    has_children: bool
    writable: bool


@dataclass(slots=True, frozen=True)
class Alarm:
    """An active alarm as WinCC reports it; timestamps are epoch milliseconds or None."""

    id: str
    tag: str
    text: str
    priority: int
    state: str  # "came" or "went"
    acked: bool
    came_at: int | None
    went_at: int | None
    acked_at: int | None


@dataclass(slots=True)
class HistoryPage:
    """One page of archived values of a tag, oldest first, with the cursor to the next."""

    name: str
    values: list[Reading]
    next: str | None
