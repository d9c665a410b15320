"""The interface every WinCC dialect implements.

The pipeline, the command path and the CLI speak only to this protocol, so the classic
WinCC REST service or WinCC Unified (GraphQL) slot in beside the ``rest`` dialect.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Protocol

from gateway.core.models import Alarm, Reading, ReadResult, TagInfo, Value

ChunkHandler = Callable[[ReadResult], Awaitable[None]]
"""Takes the result of one chunk of a bulk read as soon as that chunk is in."""


class WinCCClient(Protocol):
    """Reads, writes, alarms, history and browsing of one WinCC server."""

    async def read_many(
        self, names: Sequence[str], each: ChunkHandler | None = None, spread: float = 0.0
    ) -> ReadResult:
        """Read many tags; per-name failures land in ``ReadResult.errors``.

        With ``each``, every chunk's result is also handed to it as soon as it is in, so
        the first chunks can be published while the last are still on their way. With
        ``spread``, the chunks start evenly spaced over that many seconds instead of all
        at once.
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
