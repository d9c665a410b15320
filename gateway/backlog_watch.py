"""Saying when publishing falls behind the sources while the broker is there, and when it
has caught up: the decisions are ``gateway.core.backlog``'s, the clock and the log here."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from gateway.core.backlog import BacklogChange, BacklogWatch

log = logging.getLogger(__name__)

BACKLOG_WINDOW = 30.0
"""Seconds the backlog must keep growing, broker connected, to count as falling behind."""
BACKLOG_MARGIN = 1000
"""Growth over that window that is noise (a poll's worth of samples), in messages."""


async def watch_backlog(depth: Callable[[], int], connected: asyncio.Event) -> None:
    """Log once when the buffer keeps growing while connected, and once when it no longer
    does; runs until cancelled."""
    watch = BacklogWatch(window=BACKLOG_WINDOW, margin=BACKLOG_MARGIN)
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(BACKLOG_WINDOW / 30)
        waiting = depth()
        change = watch.observe(loop.time(), waiting, connected=connected.is_set())
        if change is BacklogChange.FALLING_BEHIND:
            log.warning(
                "publishing falls behind: %d messages wait, %d more than %g s ago, while "
                "the broker is connected; the broker or this machine does not keep up "
                "with the sample rate (a longer interval, a deadband or batch payloads "
                "lower it)",
                waiting,
                watch.growth,
                BACKLOG_WINDOW,
            )
        elif change is BacklogChange.CAUGHT_UP:
            log.info("publishing caught up: %d messages wait", waiting)
