"""Store-and-forward on disk: every message is committed before it is sent, deleted after
the broker acknowledged it, and survives a crash of the gateway.

SQLite in WAL mode, driven from one dedicated thread so the event loop never waits on
the disk. The per-tag ``seq`` and last published value are written in the same
transaction as the samples that carry them, so a restart neither reuses nor skips a seq
and does not republish unchanged values. Recent messages are also kept in a bounded
in-memory cache so that, while the broker keeps up, sending never reads the disk; once
the cache overflows (a broker outage) the backlog is read back from disk in pages.

When the disk refuses a write (full, read-only, failing), the transaction is rolled back,
the messages are dropped and counted, ``storage_error`` says why, and the next write
tries again: the buffer heals by itself once the disk takes writes again. The change
detector learns which tag states were stored and which were lost, so a lost sample is
decided again instead of counting as published.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import stat
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import orjson

from gateway.backoff import Backoff
from gateway.core.models import Value
from gateway.core.payloads import compact_json
from gateway.core.values import checked_value, show
from gateway.errors import GatewayError

log = logging.getLogger(__name__)

T = TypeVar("T")

CACHE_LIMIT = 50_000
"""Messages kept in memory for sending; beyond that they are read back from disk."""

RETRY_CAP = 5.0
"""Longest wait, in seconds, before deleting acknowledged messages is tried again after
the disk refused it."""

PRIVATE = 0o600
"""Mode of the database and its -wal and -shm files: they hold plant data."""

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
CREATE TABLE IF NOT EXISTS poll_mark (
    grp TEXT PRIMARY KEY,
    wincc_ms INTEGER NOT NULL,
    host_ms INTEGER NOT NULL
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

TagState = tuple[str, int, Value, int, int]
"""What a published sample leaves behind: tag name, seq, value, quality, source timestamp."""

AlarmState = tuple[str, bytes | None]
"""An alarm's id and its published retained state; None once the alarm is cleared."""


class PollMark(NamedTuple):
    """How far a group's last good poll read, on WinCC's clock (``wincc_ms``), and when
    it was made on the host's (``host_ms``): a restart fills the gap from there."""

    group: str
    wincc_ms: int
    host_ms: int


StatesListener = Callable[[list[TagState]], None]
"""Told which tag states a commit stored, or lost (see ``DurableBuffer``)."""


@dataclass(slots=True)
class Restored:
    """What a previous run left: per tag the seq, last published value/quality and its
    source timestamp (when known), the retained state of every alarm it had published and
    not cleared, and per poll group how far its last good poll read."""

    seqs: dict[str, int] = field(default_factory=dict)
    last: dict[str, tuple[Value, int]] = field(default_factory=dict)
    stamps: dict[str, int] = field(default_factory=dict)
    marks: dict[str, PollMark] = field(default_factory=dict)
    alarms: dict[str, bytes] = field(default_factory=dict)
    backlog: int = 0


@dataclass(slots=True, eq=False)
class _Batch:
    """Appends that go to the disk in one transaction, in the order they were made."""

    messages: list[Message] = field(default_factory=list)
    states: list[TagState] = field(default_factory=list)
    alarms: list[AlarmState] = field(default_factory=list)
    marks: list[PollMark] = field(default_factory=list)
    lost: bool = False  # dropped before its turn, with the failed commit it builds on


_NO_LAST = -1
"""The quality of a stored tag state whose last value was dropped: it has a seq only."""


def _last_sample(value: object, quality: object) -> tuple[Value, int] | None:
    """The stored last value and quality of a tag, or None if they cannot be read."""
    if type(quality) is not int or quality < 0 or type(value) not in (bytes, str):
        return None
    try:
        return checked_value(orjson.loads(value)), quality  # type: ignore[arg-type]
    except (orjson.JSONDecodeError, TypeError, ValueError):
        return None


def _text(raw: bytes) -> str:
    """A TEXT value as stored; bytes that are not UTF-8 (a damaged file) are replaced
    rather than failing the read of every row."""
    return raw.decode("utf-8", "replace")


def _sendable(row: tuple[Any, ...]) -> bool:
    """Whether a stored message can be published: a topic without wildcards within MQTT's
    size, a bytes payload, a QoS of 0 to 2. Rows the gateway wrote always are."""
    _, topic, payload, qos, retain = row
    return (
        type(topic) is str
        and 0 < len(topic.encode("utf-8", "replace")) <= MAX_TOPIC_BYTES
        and "+" not in topic
        and "#" not in topic
        and "\x00" not in topic
        and type(payload) is bytes
        and qos in (0, 1, 2)
        and type(qos) is int
        and type(retain) is int
    )


MAX_TOPIC_BYTES = 65_535

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


@contextlib.contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[None]:
    """One write transaction, rolled back whatever interrupts it.

    SQLite rolls a transaction back by itself on some errors (a full disk) and not on
    others; left open, every later ``BEGIN`` fails. A ``ROLLBACK`` of a transaction that
    is already gone would fail too, and hide the error that matters.
    """
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def make_private(path: Path) -> None:
    """Create the database file readable by its owner only (SQLite gives the -wal and
    -shm files the database's mode), and close an existing one to others."""
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE))
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(FileNotFoundError):
            if stat.S_IMODE(file.stat().st_mode) & ~PRIVATE:
                file.chmod(PRIVATE)
                log.warning("buffer file %s could be read by others; now by its owner only", file)


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
    """The queue between the pollers and the MQTT session, on disk.

    ``on_stored`` and ``on_lost`` hear, for every commit, which tag states reached the
    disk and which were dropped because the disk refused them. A commit that fails also
    drops the appends queued behind it that carry a later state of the same tag: they
    hold the next seq, and stored alone they would leave a gap behind the lost one.
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
        self.max_size = max_size
        self.policy = policy
        self._sync = sync
        self._on_stored = on_stored
        self._on_lost = on_lost
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
        self._overflowing = False
        self._dropped_up_to = 0
        self._appending: set[asyncio.Future[None]] = set()
        # Appends waiting for the next transaction, and the task that will commit them.
        self._open_batch: tuple[_Batch, asyncio.Future[None]] | None = None
        self._last_commit: asyncio.Future[None] | None = None
        self.depth = 0
        self.size_bytes = 0
        self.buffered = 0
        self.delivered = 0
        self.dropped = 0  # by the full buffer's policy
        self.storage_dropped = 0  # because the disk refused them
        self.storage_error: str | None = None  # why the disk refuses writes; None: it takes them

    # --- lifecycle ----------------------------------------------------------------------

    async def open(self) -> Restored:
        """Open (or create) the database and return what the previous run left."""
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="buffer")
        try:
            restored = await self._run(self._open_db)
        except (OSError, sqlite3.Error) as exc:
            self._executor.shutdown()
            self._executor = None
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise GatewayError(f"buffer.path {self.path}: cannot open: {why}") from exc
        self.depth = restored.backlog
        if restored.backlog:
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

    async def close(self) -> None:
        """Commit pending acknowledgements and close the database."""
        if self._executor is None:
            return
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
            await self._run(self._close_db)
            self._executor.shutdown(wait=True)
            self._executor = None

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    def _open_db(self) -> Restored:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        make_private(self.path)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.text_factory = _text
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={'FULL' if self._sync == 'full' else 'NORMAL'}")
        db.executescript(_SCHEMA)
        columns = {row[1] for row in db.execute("PRAGMA table_info(tag_state)")}
        if "ts" not in columns:  # a buffer from before source timestamps were kept
            db.execute("ALTER TABLE tag_state ADD COLUMN ts INTEGER")
        self._db = db
        restored = Restored()
        unreadable: list[tuple[object, str]] = []  # tag, what of its state was dropped
        for name, seq, value, quality, ts in db.execute(
            "SELECT name, seq, value, quality, ts FROM tag_state"
        ):
            if type(name) is not str or type(seq) is not int or seq < 0:
                unreadable.append((name, "its seq and last value"))
                continue
            restored.seqs[name] = seq
            if value is None and quality == _NO_LAST:
                continue  # dropped at an earlier start, already reported
            last = _last_sample(value, quality)
            if last is None:
                unreadable.append((name, "its last value"))
                continue
            restored.last[name] = last
            if type(ts) is int:
                restored.stamps[name] = ts
        if unreadable:
            self._drop_tag_states(db, unreadable)
        restored.marks = self._restore_marks(db)
        for alarm_id, body in db.execute("SELECT id, body FROM alarm_state"):
            if type(alarm_id) is str:  # a body that is no alarm is reported by who reads it
                restored.alarms[alarm_id] = body if type(body) is bytes else b""
            else:
                log.warning(
                    "buffer %s: dropped the stored state of alarm %s, which cannot be read",
                    self.path,
                    show(alarm_id),
                )
                db.execute("DELETE FROM alarm_state WHERE id IS ?", (alarm_id,))
        restored.backlog = db.execute("SELECT count(*) FROM outbox").fetchone()[0]
        self._last_appended = db.execute("SELECT coalesce(max(id), 0) FROM outbox").fetchone()[0]
        self.size_bytes = self._used_bytes()
        return restored

    def _drop_tag_states(
        self, db: sqlite3.Connection, unreadable: list[tuple[object, str]]
    ) -> None:
        """Forget stored tag states that cannot be read, and say which: a tag without its
        last value publishes its next reading; one without its seq starts again at 1."""
        for name, what in unreadable:
            if what == "its last value":
                db.execute(
                    "UPDATE tag_state SET value = NULL, quality = ? WHERE name IS ?",
                    (_NO_LAST, name),
                )
            else:
                db.execute("DELETE FROM tag_state WHERE name IS ?", (name,))
        shown = ", ".join(f"{show(name)} ({what})" for name, what in unreadable[:5])
        more = f" and {len(unreadable) - 5} more" if len(unreadable) > 5 else ""
        log.warning(
            "buffer %s: dropped stored tag state that cannot be read: %s%s",
            self.path,
            shown,
            more,
        )

    def _restore_marks(self, db: sqlite3.Connection) -> dict[str, PollMark]:
        """Each group's last good poll; a mark that cannot be read is dropped with a
        warning (that group's downtime is then not filled, and the log says so)."""
        marks: dict[str, PollMark] = {}
        for group, wincc_ms, host_ms in db.execute("SELECT grp, wincc_ms, host_ms FROM poll_mark"):
            if type(group) is str and type(wincc_ms) is int and type(host_ms) is int:
                marks[group] = PollMark(group, wincc_ms, host_ms)
                continue
            log.warning(
                "buffer %s: dropped the last good poll of group %s, which cannot be read; "
                "the time the gateway was stopped is not filled for it",
                self.path,
                show(group),
            )
            db.execute("DELETE FROM poll_mark WHERE grp IS ?", (group,))
        return marks

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
                self._insert, messages, states, alarms, batch.marks
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

    def _insert(
        self,
        messages: list[Message],
        states: list[TagState],
        alarms: list[AlarmState],
        marks: list[PollMark],
    ) -> tuple[int, int, int]:
        """Insert in one transaction; returns (first id, rows kept, oldest rows dropped)."""
        db = self._db
        assert db is not None
        dropped_old = 0
        keep = len(messages)
        if self.policy == "drop_newest" and self.size_bytes >= self.max_size:
            keep = 0
        last = 0
        with transaction(db):
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
                    "INSERT INTO tag_state (name, seq, value, quality, ts) VALUES {rows} "
                    "ON CONFLICT(name) DO UPDATE SET seq = excluded.seq, "
                    "value = excluded.value, quality = excluded.quality, ts = excluded.ts",
                    [
                        (name, seq, compact_json(value), quality, ts)
                        for name, seq, value, quality, ts in states
                    ],
                )
            if marks:
                db.executemany("INSERT OR REPLACE INTO poll_mark VALUES (?, ?, ?)", marks)
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
                rows, last, dropped = await self._run(self._read, self._read_after, most)
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

    def _read(self, after: int, most: int) -> tuple[list[Queued], int | None, int]:
        """Up to ``most`` stored messages after row ``after``, the last row id read (None:
        no more rows) and how many rows were dropped because they cannot be sent."""
        assert self._db is not None
        rows = self._db.execute(
            "SELECT id, topic, payload, qos, retain FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
            (after, most),
        ).fetchall()
        good = [
            (row[0], Message(row[1], row[2], row[3], bool(row[4])))
            for row in rows
            if _sendable(row)
        ]
        if len(good) < len(rows):
            bad = [row[0] for row in rows if not _sendable(row)]
            log.warning(
                "buffer %s: dropped %d stored messages that cannot be sent (damaged rows %s)",
                self.path,
                len(bad),
                ", ".join(map(str, bad[:5])) + (" ..." if len(bad) > 5 else ""),
            )
            with contextlib.suppress(sqlite3.Error):  # if not now, then at the next start
                self._delete(bad)
        return good, rows[-1][0] if rows else None, len(rows) - len(good)

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

    async def _delete_acknowledged(self) -> None:
        """Delete the acknowledged rows; the ids stay queued until that succeeded."""
        ids, self._to_delete = self._to_delete, []
        if not ids:
            return
        try:
            await self._run(self._delete, ids)
        except BaseException:
            self._to_delete[:0] = ids
            raise
        self._storage_works()

    def _delete(self, ids: list[int]) -> None:
        """Delete acknowledged rows; acks arrive nearly in order, so by ranges of ids."""
        db = self._db
        assert db is not None
        with transaction(db):
            db.executemany("DELETE FROM outbox WHERE id BETWEEN ? AND ?", id_ranges(ids))
        self.size_bytes = self._used_bytes()

    def close_for_new(self) -> None:
        """No more messages will come: ``take`` returns ``[]`` once all are sent."""
        self._closed = True
        self._ready.set()
