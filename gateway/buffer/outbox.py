"""Store-and-forward on disk: every message is committed before it is sent, deleted after
the broker acknowledged it, and survives a crash of the gateway.

SQLite in WAL mode (``gateway.buffer.store``), driven from one dedicated thread so the
event loop never waits on the disk. The per-tag ``seq`` and last published value are
written in the same transaction as the samples that carry them, so a restart neither
reuses nor skips a seq and does not republish unchanged values. Recent messages are also
kept in a bounded in-memory cache so that, while the broker keeps up, sending never reads
the disk; once the cache overflows (a broker outage) the backlog is read back from disk
in pages.

When the disk refuses a write (full, read-only, failing), the transaction is rolled back,
the messages are dropped and counted, ``storage_error`` says why, and the next write
tries again: the buffer heals by itself once the disk takes writes again. The change
detector learns which tag states were stored and which were lost, so a lost sample is
decided again instead of counting as published.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from gateway.backoff import Backoff
from gateway.buffer.ages import AgeTrail
from gateway.buffer.store import (
    AlarmState,
    BufferStore,
    Message,
    PollMark,
    Queued,
    Restored,
    TagState,
)
from gateway.errors import GatewayError

log = logging.getLogger(__name__)

T = TypeVar("T")

CACHE_LIMIT = 50_000
"""Messages kept in memory for sending; beyond that they are read back from disk."""

RETRY_CAP = 5.0
"""Longest wait, in seconds, before deleting acknowledged messages is tried again after
the disk refused it."""

DELETE_EVERY = 0.2
"""Seconds at least between two deletes of acknowledged messages. Acknowledgements come
one by one; deleting as each arrives cost a transaction and a thread handoff per handful
of messages. A crash in between sends at most this much again (same seqs, duplicates
rather than losses)."""

StatesListener = Callable[[list[TagState]], None]
"""Told which tag states a commit stored, or lost (see ``DurableBuffer``)."""


@dataclass(slots=True, eq=False)
class _Batch:
    """Appends that go to the disk in one transaction, in the order they were made."""

    messages: list[Message] = field(default_factory=list)
    states: list[TagState] = field(default_factory=list)
    alarms: list[AlarmState] = field(default_factory=list)
    marks: list[PollMark] = field(default_factory=list)
    lost: bool = False  # dropped before its turn, with the failed commit it builds on


class DurableBuffer:
    """The queue between the pollers and the MQTT session, on disk.

    ``on_stored`` and ``on_lost`` hear, for every commit, which tag states reached the
    disk and which were dropped because the disk refused them. A commit that fails also
    drops the appends queued behind it that carry a later state of the same tag: they
    hold the next seq, and stored alone they would leave a gap behind the lost one.

    Each commit is a task of the buffer's own, chained behind the one before, so an
    appender that is cancelled mid-commit (a reload, a stop) leaves the buffer consistent;
    ``settle`` and ``close`` wait for them. ``run``, which the gateway owns, deletes what
    the broker acknowledged.
    """

    def __init__(
        self,
        path: Path,
        max_size: int,
        *,
        policy: str = "drop_oldest",
        sync: str = "normal",
        on_stored: StatesListener | None = None,
        on_lost: StatesListener | None = None,
    ) -> None:
        self.path = path
        self._on_stored = on_stored
        self._on_lost = on_lost
        self._executor: ThreadPoolExecutor | None = None
        self._store = BufferStore(path, max_size, policy=policy, sync=sync)
        self._cache: deque[Queued] = deque()
        self._spilled = False
        self._read_after = 0
        self._last_appended = 0
        self._ready = asyncio.Event()
        self._closed = False
        self._to_delete: list[int] = []
        self._deleting = asyncio.Event()
        self._overflowing = False
        self._ages = AgeTrail()
        self._appending: set[asyncio.Future[None]] = set()
        # Appends waiting for the next transaction, and the task that will commit them.
        self._open_batch: tuple[_Batch, asyncio.Future[None]] | None = None
        self._last_commit: asyncio.Future[None] | None = None
        self.depth = 0
        self.buffered = 0
        self.delivered = 0
        self.dropped = 0  # by the full buffer's policy
        self.storage_dropped = 0  # because the disk refused them
        self.storage_error: str | None = None  # why the disk refuses writes; None: it takes them

    @property
    def max_size(self) -> int:
        """Bytes the stored messages may take before the policy drops some."""
        return self._store.max_size

    @property
    def policy(self) -> str:
        """What a full buffer drops: ``drop_oldest`` or ``drop_newest``."""
        return self._store.policy

    @property
    def size_bytes(self) -> int:
        """What the stored contents take on disk after the last write."""
        return self._store.size_bytes

    # --- lifecycle ----------------------------------------------------------------------

    async def open(self) -> Restored:
        """Open (or create) the database and return what the previous run left."""
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="buffer")
        try:
            restored, self._last_appended = await self._run(self._store.open)
        except (OSError, sqlite3.Error) as exc:
            self._executor.shutdown()
            self._executor = None
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise GatewayError(f"buffer.path {self.path}: cannot open: {why}") from exc
        self.depth = restored.backlog
        if restored.backlog:
            self._ages.committed(0, self._last_appended, asyncio.get_running_loop().time())
            self._spilled = True
            log.info(
                "buffer %s holds %d messages from before the restart; they are sent first",
                self.path,
                restored.backlog,
            )
        return restored

    async def run(self) -> None:
        """Delete what the broker acknowledged, batched and off the sending path, until
        cancelled.

        The gateway runs this in its TaskGroup. A disk that refuses the delete is tried
        again with backoff (``storage_error`` says why meanwhile); anything else is a bug
        that stops the gateway, rather than acknowledged messages piling up unseen.
        """
        backoff = Backoff(base=0.5, cap=RETRY_CAP)
        while True:
            await self._deleting.wait()
            self._deleting.clear()
            try:
                await self._delete_acknowledged()
            except sqlite3.Error as exc:
                self._storage_failed(exc, "delete acknowledged messages", "retrying")
                await asyncio.sleep(backoff.next_delay())
                self._deleting.set()
            else:
                backoff.reset()
                await asyncio.sleep(DELETE_EVERY)

    async def close(self) -> None:
        """Finish the commits under way, commit pending acknowledgements and close the
        database."""
        if self._executor is None:
            return
        await self.settle()
        try:
            await self._delete_acknowledged()
        except sqlite3.Error as exc:
            log.warning(
                "buffer %s cannot delete %d acknowledged messages (%s); they are sent "
                "again after the next start",
                self.path,
                len(self._to_delete),
                exc,
            )
        finally:
            await self._run(self._store.close)
            self._executor.shutdown(wait=True)
            self._executor = None

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    # --- appending ----------------------------------------------------------------------

    async def append(
        self,
        messages: list[Message],
        states: list[TagState] | None = None,
        alarms: list[AlarmState] | None = None,
        marks: list[PollMark] | None = None,
    ) -> bool:
        """Commit messages (and the tag state they carry) before anyone may send them;
        False when the disk refused them. ``marks`` are stored with them, or after the
        appends made before, never ahead of what those stored.

        Never raises and never blocks on a full buffer: the configured policy drops
        messages instead, counted and logged once per episode. Shielded: a poller stopped
        mid-append (reload, shutdown) still leaves the buffer consistent.
        """
        if not (messages or states or alarms or marks):
            return True
        if self._open_batch is None:
            batch = _Batch()
            commit: asyncio.Future[None] = asyncio.ensure_future(
                self._commit(batch, self._last_commit)
            )
            self._open_batch = batch, commit
            self._last_commit = commit
            self._appending.add(commit)
            commit.add_done_callback(self._appending.discard)
        batch, commit = self._open_batch
        batch.messages += messages
        batch.states += states or ()
        batch.alarms += alarms or ()
        batch.marks += marks or ()
        await asyncio.shield(commit)
        return not batch.lost

    async def settle(self) -> None:
        """Wait for appends still running (their pollers may have been cancelled), so a
        clean stop sends what they commit instead of leaving it for the next start."""
        if self._appending:
            await asyncio.wait(set(self._appending))

    async def _commit(self, batch: _Batch, previous: asyncio.Future[None] | None) -> None:
        """Commit one batch of appends in one transaction, after the batch before it.

        Appends made while a transaction is under way join the next one, so a poll
        whose chunks arrive together costs a few transactions, not one per chunk.
        """
        if previous is not None:
            await asyncio.wait([previous])
        if self._open_batch is not None and self._open_batch[0] is batch:
            self._open_batch = None
        if batch.lost:
            return
        messages, states, alarms = batch.messages, batch.states, batch.alarms
        try:
            first, kept, dropped_old = await self._run(
                self._store.insert, messages, states, alarms, batch.marks
            )
        except sqlite3.Error as exc:
            self._storage_failed(exc, "store messages", "dropping them until it can")
            self._lose(batch)
            self._lose_followers(batch)
            return
        self._storage_works()
        if states and self._on_stored is not None:
            self._on_stored(states)
        self._note_drops(len(messages) - kept + dropped_old)
        if dropped_old:
            self._forget_dropped_oldest()
        self.buffered += kept
        self.depth = max(0, self.depth + kept - dropped_old)
        if not kept:
            return
        last = first + kept - 1
        self._last_appended = last
        self._ages.committed(first, last, asyncio.get_running_loop().time())
        if not self._spilled and len(self._cache) + kept <= CACHE_LIMIT:
            self._cache.extend(zip(range(first, last + 1), messages[:kept], strict=True))
        elif not self._spilled:
            self._spilled = True
            self._read_after = self._cache[-1][0] if self._cache else first - 1
        self._ready.set()

    def _lose(self, batch: _Batch) -> None:
        """Count a batch the disk did not take, and say which tag states it held."""
        batch.lost = True
        self.storage_dropped += len(batch.messages)
        if batch.states and self._on_lost is not None:
            self._on_lost(batch.states)

    def _lose_followers(self, failed: _Batch) -> None:
        """Drop the appends queued behind ``failed`` if they carry a later state of one of
        its tags: that state holds the next seq of a lost one."""
        if self._open_batch is None:
            return
        follower = self._open_batch[0]
        names = {state[0] for state in failed.states}
        if any(state[0] in names for state in follower.states):
            self._open_batch = None
            self._lose(follower)

    def _storage_failed(self, exc: sqlite3.Error, what: str, then: str) -> None:
        """Remember why the disk refused a write; logged once until it takes one again."""
        if self.storage_error is None:
            # The message says it all (disk full, read-only); a traceback adds nothing.
            log.error("buffer %s cannot %s (%s); %s", self.path, what, exc, then)
        self.storage_error = str(exc)

    def _storage_works(self) -> None:
        if self.storage_error is not None:
            self.storage_error = None
            log.info("buffer %s stores messages again", self.path)

    def _forget_dropped_oldest(self) -> None:
        """Dropped rows leave the send cache too, so counters and the wire agree."""
        limit = self._store.dropped_up_to
        self._ages.gone(limit)
        while self._cache and self._cache[0][0] <= limit:
            self._cache.popleft()
        self._read_after = max(self._read_after, limit)

    def _note_drops(self, count: int) -> None:
        if count <= 0:
            if self._overflowing and self.size_bytes < self.max_size * 0.9:
                self._overflowing = False
                log.info(
                    "buffer below its limit again; %d messages were dropped in all", self.dropped
                )
            return
        self.dropped += count
        if not self._overflowing:
            self._overflowing = True
            log.warning(
                "buffer full (%d bytes): policy %s drops messages until the broker catches up",
                self.max_size,
                self.policy,
            )

    def oldest_age(self) -> float:
        """Seconds the oldest waiting message has waited (to about a second)."""
        return self._ages.oldest_age(asyncio.get_running_loop().time(), self.depth)

    # --- sending ------------------------------------------------------------------------

    def __len__(self) -> int:
        return self.depth

    async def take(self, most: int) -> list[Queued]:
        """Wait for messages and take up to ``most``, oldest first; ``[]`` once closed."""
        while True:
            if self._cache:
                count = min(most, len(self._cache))
                return [self._cache.popleft() for _ in range(count)]
            if self._spilled:
                rows, last, dropped = await self._run(self._store.read, self._read_after, most)
                if last is not None:
                    self._read_after = last
                if dropped:
                    self.depth = max(0, self.depth - dropped)
                if last is None or self._read_after >= self._last_appended:
                    self._spilled = False
                if rows:
                    return rows
                continue
            if self._closed:
                return []
            self._ready.clear()
            await self._ready.wait()

    def requeue(self, batch: list[Queued]) -> None:
        """Unacknowledged messages go back in front, in their original order."""
        self._cache.extendleft(reversed(batch))
        self._ready.set()

    def ack(self, batch: list[Queued]) -> None:
        """The broker has them: delete them soon (batched, off the sending path)."""
        self._to_delete.extend(row_id for row_id, _ in batch)
        if batch:
            self._ages.gone(batch[-1][0])
        self.delivered += len(batch)
        self.depth = max(0, self.depth - len(batch))
        self._deleting.set()

    async def _delete_acknowledged(self) -> None:
        """Delete the acknowledged rows; the ids stay queued until that succeeded."""
        ids, self._to_delete = self._to_delete, []
        if not ids:
            return
        try:
            await self._run(self._store.delete, ids)
        except BaseException:
            self._to_delete[:0] = ids
            raise
        self._storage_works()

    def close_for_new(self) -> None:
        """No more messages will come: ``take`` returns ``[]`` once all are sent."""
        self._closed = True
        self._ready.set()
