"""Messages waiting for the broker, in order, bounded, never dropped silently."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(slots=True, frozen=True)
class Message:
    """One MQTT message to publish."""

    topic: str
    payload: bytes
    qos: int
    retain: bool


class Outbox:
    """A bounded FIFO between the pollers and the MQTT session.

    Pollers never wait on it: when it is full the oldest message is dropped, counted,
    and logged once per overflow episode. The session takes batches, and gives back
    what the broker did not acknowledge so it goes out first after a reconnect.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._queue: deque[Message] = deque()
        self._ready = asyncio.Event()
        self._closed = False
        self._overflowing = False
        self.dropped = 0
        self.accepted = 0

    def __len__(self) -> int:
        return len(self._queue)

    def put(self, messages: list[Message]) -> None:
        """Append messages; drop the oldest beyond the limit (counted, logged per episode)."""
        if not messages:
            return
        self._queue.extend(messages)
        self.accepted += len(messages)
        excess = len(self._queue) - self._limit
        if excess > 0:
            for _ in range(excess):
                self._queue.popleft()
            self.dropped += excess
            if not self._overflowing:
                self._overflowing = True
                log.warning(
                    "outbox full (%d messages): dropping the oldest until the broker catches up",
                    self._limit,
                )
        elif self._overflowing and len(self._queue) < self._limit // 2:
            self._overflowing = False
            log.info("outbox below half its limit again; %d messages dropped so far", self.dropped)
        self._ready.set()

    def requeue(self, messages: list[Message]) -> None:
        """Put unacknowledged messages back at the front, in their original order."""
        self._queue.extendleft(reversed(messages))
        self._ready.set()

    async def take(self, most: int) -> list[Message]:
        """Wait for messages and take up to ``most``; ``[]`` once closed and empty."""
        while not self._queue:
            if self._closed:
                return []
            self._ready.clear()
            await self._ready.wait()
        count = min(most, len(self._queue))
        return [self._queue.popleft() for _ in range(count)]

    def close(self) -> None:
        """No more messages will come: ``take`` returns ``[]`` once the queue is empty."""
        self._closed = True
        self._ready.set()
