"""Command answers on their way out: every one published, in order, once the broker takes it.

Answers wait here while the broker is away and go out on the next connection; the oldest
are dropped, logged, when too many wait. They are plain values: the MQTT session turns the
correlation data into the MQTT 5 property.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gateway.backoff import Backoff

log = logging.getLogger(__name__)

MAX_TOPIC_BYTES = 65535
"""Longest topic MQTT can carry, in UTF-8 bytes."""
MAX_UNSENT_ANSWERS = 10_000
"""Answers kept while the broker is away; beyond that the oldest are dropped, logged."""


def valid_response_topic(topic: str | None) -> bool:
    """A topic the gateway may publish an answer to: no wildcards, no NUL, not too long."""
    return bool(
        topic
        and "+" not in topic
        and "#" not in topic
        and "\x00" not in topic
        and len(topic.encode("utf-8", "surrogatepass")) <= MAX_TOPIC_BYTES
    )


@dataclass(slots=True, frozen=True)
class Answer:
    """Where and what to answer."""

    topic: str
    payload: bytes
    correlation_data: bytes | None


AnswerSink = Callable[[Answer], Awaitable[bool]]
"""Publishes an answer; False when the broker connection is not there or was lost."""


class AnswerOutbox:
    """The answers not yet published, and the task that publishes them."""

    def __init__(self, publish: AnswerSink, connected: asyncio.Event) -> None:
        self._publish = publish
        self._connected = connected
        self._answers: deque[Answer] = deque()
        self._changed = asyncio.Event()
        self._finished = False

    def put(self, answer: Answer) -> None:
        """Queue an answer; the oldest go when the broker is away too long."""
        if len(self._answers) >= MAX_UNSENT_ANSWERS:
            dropped = self._answers.popleft()
            log.warning("command answer to %s dropped: too many undelivered", dropped.topic)
        self._answers.append(answer)
        self._changed.set()

    def finish(self) -> None:
        """No more answers will come: ``run`` returns once the last is out."""
        self._finished = True
        self._changed.set()

    async def run(self) -> None:
        """Publish the answers in order; one not delivered is tried again after the next
        connection. Ends once finished and empty, or the broker is not there to take the
        rest."""
        backoff = Backoff(base=0.2, cap=5.0)
        while True:
            if not self._answers:
                if self._finished:
                    return
                self._changed.clear()
                await self._changed.wait()
                continue
            if self._finished and not self._connected.is_set():
                log.warning(
                    "%d command answers not delivered: the broker is not connected",
                    len(self._answers),
                )
                return
            await self._connected.wait()
            if await self._publish(self._answers[0]):
                self._answers.popleft()
                backoff.reset()
            else:
                await asyncio.sleep(backoff.next_delay())
