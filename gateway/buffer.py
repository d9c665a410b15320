"""Store-and-forward on disk: every message is committed before it is sent, deleted after
the broker acknowledged it, and survives a crash of the gateway.

SQLite in WAL mode, driven from one dedicated thread so the event loop never waits on
the disk. The per-tag ``seq`` and last published value are written in the same
transaction as the samples that carry them, so a restart neither reuses nor skips a seq
and does not republish unchanged values. Recent messages are also kept in a bounded
in-memory cache so that, while the broker keeps up, sending never reads the disk; once
the cache overflows (a broker outage) the backlog is read back from disk in pages.
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

import orjson

from gateway.core.payloads import compact_json
from gateway.wincc.models import Value

log = logging.getLogger(__name__)

T = TypeVar("T")

CACHE_LIMIT = 50_000
"""Messages kept in memory for sending; beyond that they are read back from disk."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tag_state (
    name TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    value BLOB,
    quality INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS alarm_state (
    id TEXT PRIMARY KEY,
    body BLOB NOT NULL
) WITHOUT ROWID;
"""


@dataclass(slots=True, frozen=True)
class Message:
    """One MQTT message to publish."""

    topic: str
    payload: bytes
    qos: int
    retain: bool


Queued = tuple[int, Message]
"""A message with its row id in the buffer, which acknowledges it."""

TagState = tuple[str, int, Value, int]
"""What a published sample leaves behind: tag name, seq, value, quality."""

AlarmState = tuple[str, bytes | None]
"""An alarm's id and its published retained state; None once the alarm is cleared."""


@dataclass(slots=True)
class Restored:
    """What a previous run left: per tag the seq and last published value/quality, and the
    retained state of every alarm it had published and not cleared."""

    seqs: dict[str, int] = field(default_factory=dict)
    last: dict[str, tuple[Value, int]] = field(default_factory=dict)
    alarms: dict[str, bytes] = field(default_factory=dict)
    backlog: int = 0


@dataclass(slots=True, eq=False)
class _Batch:
    """Appends that go to the disk in one transaction, in the order they were made."""

    messages: list[Message] = field(default_factory=list)
    states: list[TagState] = field(default_factory=list)
    alarms: list[AlarmState] = field(default_factory=list)


ROWS_PER_STATEMENT = 128
"""The most rows one INSERT carries: 4 columns x 128 stays under any SQLite's 999 limit."""


def insert_rows(db: sqlite3.Connection, sql: str, rows: list[tuple[Any, ...]]) -> None:
    """Insert ``rows`` with a few multi-row statements; ``sql`` holds ``{rows}`` where the
    ``VALUES`` list goes.

    ``executemany`` steps one statement per row, and the sqlite3 module gives up the GIL
    around every step. While the event loop is busy, each time this thread takes the GIL
    back costs up to the interpreter's switch interval (5 ms): a 100-row append took
    190 ms next to a 50,000-tag poll. Statements carry 128 rows, then the rest in powers
    of two, so at most eight shapes per table sit in the statement cache.
    """
    if not rows:
        return
    row = "(" + ", ".join("?" * len(rows[0])) + ")"
    start = 0
    size = ROWS_PER_STATEMENT
    while start < len(rows):
        while size > len(rows) - start:
            size //= 2
        part = rows[start : start + size]
        db.execute(sql.format(rows=", ".join([row] * size)), [v for r in part for v in r])
        start += size


def id_ranges(ids: list[int]) -> list[tuple[int, int]]:
    """``[5, 3, 4, 9]`` -> ``[(3, 5), (9, 9)]``: the ids as inclusive, contiguous ranges."""
    ranges: list[tuple[int, int]] = []
    for row_id in sorted(ids):
        if ranges and row_id <= ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], max(ranges[-1][1], row_id))
        else:
            ranges.append((row_id, row_id))
    return ranges


class DurableBuffer:
    """The queue between the pollers and the MQTT session, on disk."""

    def __init__(
        self, path: Path, max_size: int, *, policy: str = "drop_oldest", sync: str = "normal"
    ) -> None:
        self.path = path
        self.max_size = max_size
        self.policy = policy
        self._sync = sync
        self._executor: ThreadPoolExecutor | None = None
        self._db: sqlite3.Connection | None = None
        self._cache: deque[Queued] = deque()
        self._spilled = False
        self._read_after = 0
        self._last_appended = 0
        self._ready = asyncio.Event()
        self._closed = False
        self._to_delete: list[int] = []
        self._deleting = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._overflowing = False
        self._failing = False
        self._dropped_up_to = 0
        self._appending: set[asyncio.Future[None]] = set()
        # Appends waiting for the next transaction, and the task that will commit them.
        self._open_batch: tuple[_Batch, asyncio.Future[None]] | None = None
        self._last_commit: asyncio.Future[None] | None = None
        self.depth = 0
        self.size_bytes = 0
        self.buffered = 0
        self.delivered = 0
        self.dropped = 0

    # --- lifecycle ----------------------------------------------------------------------

    async def open(self) -> Restored:
        """Open (or create) the database and return what the previous run left."""
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="buffer")
        restored = await self._run(self._open_db)
        self.depth = restored.backlog
        if restored.backlog:
            self._spilled = True
            log.info(
                "buffer %s holds %d messages from before the restart; they are sent first",
                self.path,
                restored.backlog,
            )
        self._flusher = asyncio.create_task(self._flush_deletes(), name="buffer-deletes")
        return restored

    async def close(self) -> None:
        """Commit pending acknowledgements and close the database."""
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
            self._flusher = None
        if self._executor is None:
            return
        await self._delete_acknowledged()
        await self._run(self._close_db)
        self._executor.shutdown(wait=True)
        self._executor = None

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    def _open_db(self) -> Restored:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={'FULL' if self._sync == 'full' else 'NORMAL'}")
        db.executescript(_SCHEMA)
        self._db = db
        restored = Restored()
        for name, seq, value, quality in db.execute(
            "SELECT name, seq, value, quality FROM tag_state"
        ):
            restored.seqs[name] = seq
            restored.last[name] = (orjson.loads(value), quality)
        restored.alarms = dict(db.execute("SELECT id, body FROM alarm_state"))
        restored.backlog = db.execute("SELECT count(*) FROM outbox").fetchone()[0]
        self._last_appended = db.execute("SELECT coalesce(max(id), 0) FROM outbox").fetchone()[0]
        self.size_bytes = self._used_bytes()
        return restored

    def _close_db(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _used_bytes(self) -> int:
        assert self._db is not None
        (used,) = self._db.execute(
            "SELECT (page_count - freelist_count) * page_size"
            " FROM pragma_page_count(), pragma_freelist_count(), pragma_page_size()"
        ).fetchone()
        return int(used)

    # --- appending ----------------------------------------------------------------------

    async def append(
        self,
        messages: list[Message],
        states: list[TagState] | None = None,
        alarms: list[AlarmState] | None = None,
    ) -> None:
        """Commit messages (and the tag state they carry) before anyone may send them.

        Never raises and never blocks on a full buffer: the configured policy drops
        messages instead, counted and logged once per episode. Shielded: a poller stopped
        mid-append (reload, shutdown) still leaves the buffer consistent.
        """
        if not (messages or states or alarms):
            return
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
        await asyncio.shield(commit)

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
        messages, states, alarms = batch.messages, batch.states, batch.alarms
        try:
            first, kept, dropped_old = await self._run(self._insert, messages, states, alarms)
        except sqlite3.Error as exc:
            self.dropped += len(messages)
            if not self._failing:
                self._failing = True
                # The message says it all (disk full, no permission); a traceback adds nothing.
                log.error("buffer %s cannot store messages (%s); dropping them", self.path, exc)  # noqa: TRY400
            return
        if self._failing:
            self._failing = False
            log.info("buffer %s stores messages again", self.path)
        self._note_drops(len(messages) - kept + dropped_old)
        if dropped_old:
            self._forget_dropped_oldest()
        self.buffered += kept
        self.depth = max(0, self.depth + kept - dropped_old)
        if not kept:
            return
        last = first + kept - 1
        self._last_appended = last
        if not self._spilled and len(self._cache) + kept <= CACHE_LIMIT:
            self._cache.extend(zip(range(first, last + 1), messages[:kept], strict=True))
        elif not self._spilled:
            self._spilled = True
            self._read_after = self._cache[-1][0] if self._cache else first - 1
        self._ready.set()

    def _insert(
        self, messages: list[Message], states: list[TagState], alarms: list[AlarmState]
    ) -> tuple[int, int, int]:
        """Insert in one transaction; returns (first id, rows kept, oldest rows dropped)."""
        db = self._db
        assert db is not None
        dropped_old = 0
        keep = len(messages)
        if self.policy == "drop_newest" and self.size_bytes >= self.max_size:
            keep = 0
        last = 0
        db.execute("BEGIN IMMEDIATE")
        try:
            if keep:
                insert_rows(
                    db,
                    "INSERT INTO outbox (topic, payload, qos, retain) VALUES {rows}",
                    [(m.topic, m.payload, m.qos, m.retain) for m in messages],
                )
                last = db.execute("SELECT last_insert_rowid()").fetchone()[0]
            if states:
                insert_rows(
                    db,
                    "INSERT INTO tag_state (name, seq, value, quality) VALUES {rows} "
                    "ON CONFLICT(name) DO UPDATE SET seq = excluded.seq, "
                    "value = excluded.value, quality = excluded.quality",
                    [
                        (name, seq, compact_json(value), quality)
                        for name, seq, value, quality in states
                    ],
                )
            if alarms:
                db.executemany(
                    "INSERT OR REPLACE INTO alarm_state (id, body) VALUES (?, ?)",
                    [(alarm_id, body) for alarm_id, body in alarms if body is not None],
                )
                db.executemany(
                    "DELETE FROM alarm_state WHERE id = ?",
                    [(alarm_id,) for alarm_id, body in alarms if body is None],
                )
            used = self._used_bytes()
            if self.policy == "drop_oldest" and used > self.max_size:
                dropped_old = self._drop_oldest(db, at_least=keep)
                used = self._used_bytes()
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self.size_bytes = used
        return last - keep + 1, keep, dropped_old

    def _drop_oldest(self, db: sqlite3.Connection, at_least: int) -> int:
        """Delete the oldest rows until the buffer is back under 90 % of its limit."""
        rows: int = db.execute("SELECT count(*) FROM outbox").fetchone()[0]
        used = self._used_bytes()
        excess = (used - 0.9 * self.max_size) / used
        count = min(rows, max(at_least, int(rows * excess) + 1))
        (self._dropped_up_to,) = db.execute(
            "SELECT max(id) FROM (SELECT id FROM outbox ORDER BY id LIMIT ?)", (count,)
        ).fetchone()
        db.execute("DELETE FROM outbox WHERE id <= ?", (self._dropped_up_to,))
        return count

    def _forget_dropped_oldest(self) -> None:
        """Dropped rows leave the send cache too, so counters and the wire agree."""
        limit = self._dropped_up_to
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
                rows = await self._run(self._read, self._read_after, most)
                if rows:
                    self._read_after = rows[-1][0]
                if not rows or self._read_after >= self._last_appended:
                    self._spilled = False
                if rows:
                    return rows
                continue
            if self._closed:
                return []
            self._ready.clear()
            await self._ready.wait()

    def _read(self, after: int, most: int) -> list[Queued]:
        assert self._db is not None
        rows = self._db.execute(
            "SELECT id, topic, payload, qos, retain FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
            (after, most),
        ).fetchall()
        return [(row[0], Message(row[1], row[2], row[3], bool(row[4]))) for row in rows]

    def requeue(self, batch: list[Queued]) -> None:
        """Unacknowledged messages go back in front, in their original order."""
        self._cache.extendleft(reversed(batch))
        self._ready.set()

    def ack(self, batch: list[Queued]) -> None:
        """The broker has them: delete them soon (batched, off the sending path)."""
        self._to_delete.extend(row_id for row_id, _ in batch)
        self.delivered += len(batch)
        self.depth = max(0, self.depth - len(batch))
        self._deleting.set()

    async def _flush_deletes(self) -> None:
        while True:
            await self._deleting.wait()
            self._deleting.clear()
            await self._delete_acknowledged()

    async def _delete_acknowledged(self) -> None:
        ids, self._to_delete = self._to_delete, []
        if ids:
            await self._run(self._delete, ids)

    def _delete(self, ids: list[int]) -> None:
        """Delete acknowledged rows; acks arrive nearly in order, so by ranges of ids."""
        db = self._db
        assert db is not None
        db.execute("BEGIN IMMEDIATE")
        db.executemany("DELETE FROM outbox WHERE id BETWEEN ? AND ?", id_ranges(ids))
        db.execute("COMMIT")
        self.size_bytes = self._used_bytes()

    def close_for_new(self) -> None:
        """No more messages will come: ``take`` returns ``[]`` once all are sent."""
        self._closed = True
        self._ready.set()
