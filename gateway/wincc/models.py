"""Plain data the WinCC client returns.

These sit on the hot path (tens of thousands of readings a second), so they are slotted
dataclasses, not pydantic models.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

Value = bool | int | float | str | None


class TagType(StrEnum):
    """Data type of a tag as the ``rest`` API names it."""

    FLOAT = "float"
    INT = "int"
    BOOL = "bool"
    STRING = "string"


class Reading(NamedTuple):
    """One sample of one tag: ``ts_ms`` is the WinCC source timestamp, epoch milliseconds.

    A named tuple: immutable like a frozen dataclass, but built in C, which matters at
    tens of thousands of readings a second.
    """

    name: str
    value: Value
    quality: int
    ts_ms: int


@dataclass(slots=True)
class ReadResult:
    """Outcome of a bulk read: the readings, and the names that failed with the reason."""

    readings: list[Reading] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)


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
