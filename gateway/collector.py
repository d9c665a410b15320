"""The cyclic garbage collector, kept off the gateway's per-tag state.

Every tag keeps its last reading and what was published for it, and a busy plant
replaces tens of thousands of those objects a second. Python's collector would trace
them all again and again, young and old, although the hot path makes no reference
cycles: at 150,000 changing tags that tracing took a third of the gateway's time.

So what has lived for a moment is frozen out of the collector's scans (``gc.freeze``,
which costs nothing); objects freed by their reference counts are freed as always. What
a freeze could hold on to is garbage in reference cycles (an exception and its
traceback, say): a full collection over everything, frozen or not, finds it every
``SWEEP_EVERY`` seconds.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

log = logging.getLogger(__name__)

COLLECT_AFTER = 1_000_000
"""Objects allocated and not yet freed between two young collections (Python: 700). A
freeze starts the count again, so young collections run only when a second allocates more
than this: a poll of 150,000 changed tags does not set off collections that would only
find its own samples in use."""

FREEZE_EVERY = 1.0
"""Seconds between two freezes: what survives a poll is frozen out of the scans."""

SWEEP_EVERY = 60.0
"""Seconds between two full collections that unfreeze everything first, so garbage in
reference cycles is freed within minutes, not never."""


def tune() -> None:
    """At start: freeze what is loaded by now, and run young collections less often."""
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(COLLECT_AFTER, older, oldest)


async def keep_frozen() -> None:
    """Freeze the survivors every ``FREEZE_EVERY`` s, sweep every ``SWEEP_EVERY`` s."""
    loop = asyncio.get_running_loop()
    swept_at = loop.time()
    while True:
        await asyncio.sleep(FREEZE_EVERY)
        if loop.time() - swept_at >= SWEEP_EVERY:
            swept_at = loop.time()
            sweep()
        gc.freeze()


def sweep() -> int:
    """A full collection over every object, frozen ones included; the objects freed."""
    started = time.perf_counter()
    gc.unfreeze()
    freed = gc.collect()
    gc.freeze()
    log.debug(
        "garbage collection: %d objects in reference cycles freed in %.0f ms",
        freed,
        (time.perf_counter() - started) * 1000,
    )
    return freed
