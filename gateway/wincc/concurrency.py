"""Running a batch of requests at once, supervised, with plain errors for the caller."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar

from gateway.core.models import ReadResult

T = TypeVar("T")

ChunkReader = Callable[[Sequence[str]], Coroutine[Any, Any, ReadResult]]
"""Reads one chunk of names."""

ChunkHandler = Callable[[ReadResult], Awaitable[None]]
"""Takes the result of one chunk of a bulk read as soon as that chunk is in."""


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


async def read_chunks(
    names: Sequence[str],
    size: int,
    read_chunk: ChunkReader,
    each: ChunkHandler | None = None,
    spread: float = 0.0,
) -> list[ReadResult]:
    """``read_chunk`` over ``names`` in chunks of ``size``, concurrently, the results in
    order; ``each`` gets every chunk's result as soon as it is in, and chunk ``i`` of
    ``n`` starts ``i * spread / n`` seconds after the first.

    The tag poller spreads a large group's reads over its interval and publishes each
    chunk as it comes in; it never needs them merged.
    """
    chunks = [names[start : start + size] for start in range(0, len(names), size)]
    if not chunks:
        return []
    gap = spread / len(chunks)

    async def read_and_hand_on(index: int, chunk: Sequence[str]) -> ReadResult:
        if index and gap > 0:
            await asyncio.sleep(index * gap)
        part = await read_chunk(chunk)
        if each is not None:
            await each(part)
        return part

    return await run_all([read_and_hand_on(i, chunk) for i, chunk in enumerate(chunks)])


async def read_in_chunks(names: Sequence[str], size: int, read_chunk: ChunkReader) -> ReadResult:
    """``read_chunks`` merged in order: how the HTTP dialects split a bulk read into
    requests (only how one chunk is asked for differs)."""
    parts = await read_chunks(names, size, read_chunk)
    if not parts:
        return ReadResult()
    if len(parts) == 1:
        return parts[0]
    merged = ReadResult(lineages=[])
    for part in parts:
        merged.readings.extend(part.readings)
        merged.errors.update(part.errors)
        if part.lineages is None:
            merged.lineages = None
        elif merged.lineages is not None:
            merged.lineages.extend(part.lineages)
    return merged
