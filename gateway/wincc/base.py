"""The interface every WinCC dialect implements.

The pipeline, the command path and the CLI speak only to this protocol, so the classic
WinCC REST service or WinCC Unified (GraphQL) slot in beside the ``rest`` dialect.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from gateway.core.models import Alarm, Reading, ReadResult, TagInfo, Value


class WinCCClient(Protocol):
    """Reads, writes, alarms, history and browsing of one WinCC server."""

    @property
    def batch_size(self) -> int:
        """Tag names per read request: a poller that reads a group in parts reads parts of
        this size, so each part is one request."""
        ...

    async def read_many(self, names: Sequence[str]) -> ReadResult:
        """Read many tags; per-name failures land in ``ReadResult.errors``.

        The client splits the names into requests of ``batch_size`` and sends them
        concurrently; when to read and what to do with each part is the caller's concern.
        """
        ...

    async def read(self, name: str) -> Reading:
        """Read one tag."""
        ...

    async def write(self, name: str, value: Value) -> Reading:
        """Write one tag and return the reading the server reports afterwards."""
        ...

    async def active_alarms(self) -> list[Alarm]:
        """The alarms active now."""
        ...

    async def acknowledge(self, alarm_id: str, comment: str | None = None) -> None:
        """Acknowledge one alarm."""
        ...

    def history(self, name: str, start_ms: int, end_ms: int) -> AsyncIterator[Reading]:
        """Archived values of a tag in [start, end], oldest first, across all pages."""
        ...

    async def browse(self, path: str) -> list[TagInfo]:
        """The direct children of ``path`` in the tag hierarchy."""
        ...

    async def close(self) -> None:
        """Log out and release what the client holds (not the injected session)."""
        ...
