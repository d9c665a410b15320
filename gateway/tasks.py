"""Tasks that live and die together: whichever ends first ends the others."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from typing import Any


async def first_to_end(tasks: Collection[asyncio.Task[Any]]) -> set[asyncio.Task[Any]]:
    """Wait until one of ``tasks`` ends, cancel the others and wait for them, and return
    those that ended. The error of one that failed propagates as itself, not wrapped in a
    group, so callers catch the errors they know (a lost link, a lost server).
    """
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks)
    for task in done:
        task.result()
    return done
