"""A redundant pair of WinCC servers behind the interface of one.

Every request goes to the active server. When it stops answering (unreachable, 503,
timeout) the request fails as it would with one server, and the partner becomes active
for the next request: the poller counts the failed poll as a gap and, on the partner's
first good poll, fills it from the partner's archive. The gateway stays with the partner
while it answers (no switching back and forth). A write or an acknowledgement goes to the
active server only and is never repeated on the partner: whether the first one took
effect is unknown.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TypeVar

from gateway.core.models import Alarm, Reading, ReadResult, TagInfo, Value
from gateway.core.rotation import Rotation
from gateway.errors import WinCCUnavailable
from gateway.wincc.base import WinCCClient

log = logging.getLogger(__name__)

T = TypeVar("T")


class RedundantClient:
    """Reads, writes, alarms, history and browsing of whichever server of a pair serves."""

    def __init__(self, servers: Sequence[tuple[str, WinCCClient]]) -> None:
        self._servers = dict(servers)
        self._rotation = Rotation([url for url, _ in servers])
        self._redu: dict[str, str] = {}  # what each server last said it is (Unified)
        self.failovers = 0

    @property
    def active_url(self) -> str:
        """The server requests go to now."""
        return self._rotation.current

    @property
    def batch_size(self) -> int:
        return self._servers[self.active_url].batch_size

    def _lost(self, url: str, exc: WinCCUnavailable) -> None:
        """The server at ``url`` stopped answering: the partner serves from now on (once,
        however many requests in flight to it fail alike)."""
        if url != self.active_url:
            return
        self._rotation.failed()
        self.failovers += 1
        log.warning(
            "WinCC server %s stopped answering (%s); switching to %s", url, exc, self.active_url
        )

    def reported(self, url: str, state: str) -> None:
        """A server said it is ``ACTIVE`` or ``PASSIVE`` (WinCC Unified's reduState):
        requests go to the server that says it is active."""
        self._redu[url] = state
        active = next((one for one, said in self._redu.items() if said == "ACTIVE"), None)
        if active is None or active == self.active_url:
            return
        before = self.active_url
        self._rotation.select(active)
        self.failovers += 1
        log.warning("WinCC server %s reports ACTIVE; switching to it from %s", active, before)

    async def _call(
        self, request: Callable[[WinCCClient], Awaitable[T]], *, again: bool = False
    ) -> T:
        """``request`` on the active server. With ``again`` (a question about the state
        now, with no gap to account for: the active alarms, browsing), one that failed on
        a server no longer active is asked once more of the one that is: a request still
        on its way to the old server when the pair switched does not mark WinCC down."""
        url = self.active_url
        try:
            return await request(self._servers[url])
        except WinCCUnavailable as exc:
            self._lost(url, exc)
            if not again or url == self.active_url:
                raise
        return await self._call(request)

    async def read_many(self, names: Sequence[str]) -> ReadResult:
        return await self._call(lambda server: server.read_many(names))

    async def read(self, name: str) -> Reading:
        return await self._call(lambda server: server.read(name))

    async def write(self, name: str, value: Value) -> Reading:
        return await self._call(lambda server: server.write(name, value))

    async def active_alarms(self) -> list[Alarm]:
        return await self._call(lambda server: server.active_alarms(), again=True)

    async def acknowledge(self, alarm_id: str, comment: str | None = None) -> None:
        await self._call(lambda server: server.acknowledge(alarm_id, comment))

    async def history(self, name: str, start_ms: int, end_ms: int) -> AsyncIterator[Reading]:
        url = self.active_url
        try:
            async for reading in self._servers[url].history(name, start_ms, end_ms):
                yield reading
        except WinCCUnavailable as exc:
            self._lost(url, exc)
            raise

    async def browse(self, path: str) -> list[TagInfo]:
        return await self._call(lambda server: server.browse(path), again=True)

    async def close(self) -> None:
        for server in self._servers.values():
            await server.close()
