"""Running a batch of requests at once, supervised, with plain errors for the caller."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


async def run_all(coros: Sequence[Coroutine[Any, Any, T]]) -> list[T]:
    """Await all ``coros`` concurrently and return their results in order.

    A TaskGroup owns the tasks, so when one fails the others are cancelled rather than
    left running. The first failure is raised as itself, not wrapped in an
    ``ExceptionGroup``, so callers keep catching ``WinCCError``; concurrent requests
    that fail together nearly always share one cause, and a note counts the others.
    """
    if len(coros) == 1:
        return [await coros[0]]
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(coro) for coro in coros]
    except ExceptionGroup as failed:
        first = failed.exceptions[0]
        if len(failed.exceptions) > 1:
            first.add_note(f"{len(failed.exceptions) - 1} concurrent request(s) failed as well")
    else:
        return [task.result() for task in tasks]
    raise first
