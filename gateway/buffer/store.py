"""The buffer's SQLite file: its schema, opening it, restoring what the previous run left
(dropping, with a warning, whatever of it a damaged file no longer holds readably), and
the statements that store, read and delete messages.

Everything here blocks on the disk: ``DurableBuffer`` runs it on its one thread.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import chain
from math import isnan
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from gateway.core.models import Value
from gateway.core.payloads import compact_json
from gateway.core.values import checked_value, show

log = logging.getLogger(__name__)

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
CREATE TABLE IF NOT EXISTS state_log (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    seq INTEGER NOT NULL,
    value BLOB,
    quality INTEGER NOT NULL,
    ts INTEGER
);
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


class Message(NamedTuple):
    """One MQTT message to publish. A named tuple: immutable like a frozen dataclass, at
    half the cost to build, once per published sample."""

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


_NO_LAST = -1
"""The quality of a stored tag state whose last value was dropped: it has a seq only."""


def _last_sample(value: object, quality: object) -> tuple[Value, int] | None:
    """The stored last value and quality of a tag, or None if they cannot be read."""
    if type(quality) is not int or quality < 0:
        return None
    if type(value) is float:  # stored as itself, see ``_insert``
        return value, quality
    if type(value) not in (bytes, str):
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

FOLD_AFTER = 10_000
"""Tag states appended to ``state_log`` before they are folded into ``tag_state``.

Every change stores its tag's new seq and value. Updated in place, ``tag_state`` took a
random page of its B-tree per change, three quarters of what a commit cost; appended to
a log they cost what a message does, and a fold every ``FOLD_AFTER`` rows writes each
tag that changed once: together half the cost, in a fold of about 25 ms at 50,000 tags
(larger folds cost less a change but hold the commits behind them up for longer)."""

_FOLD = (
    "INSERT INTO tag_state (name, seq, value, quality, ts) "
    "SELECT name, seq, value, quality, ts FROM state_log "
    "WHERE id IN (SELECT max(id) FROM state_log GROUP BY name) ORDER BY name "
    "ON CONFLICT(name) DO UPDATE SET seq = excluded.seq, "
    "value = excluded.value, quality = excluded.quality, ts = excluded.ts"
)
"""Each tag's last logged state into ``tag_state``, in key order."""

_STATES = (
    "SELECT name, seq, value, quality, ts FROM tag_state "
    "WHERE name NOT IN (SELECT name FROM state_log) UNION ALL "
    "SELECT name, seq, value, quality, ts FROM state_log "
    "WHERE id IN (SELECT max(id) FROM state_log GROUP BY name)"
)
"""Each tag's last stored state: from the log where it holds one (not folded yet)."""

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
        db.execute(sql.format(rows=", ".join([row] * size)), list(chain.from_iterable(part)))
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


class BufferStore:
    """One buffer's database. Not thread-safe: every call comes from the buffer's thread.

    It keeps the stored contents within ``max_size`` bytes as ``policy`` says; ``size_bytes``
    is what they take after the last write.
    """

    def __init__(self, path: Path, max_size: int, *, policy: str, sync: str) -> None:
        self.path = path
        self.max_size = max_size
        self.policy = policy
        self._sync = sync
        self._db: sqlite3.Connection | None = None
        self.size_bytes = 0
        self.dropped_up_to = 0  # the last row dropped by the drop_oldest policy
        self._logged = 0  # rows in state_log

    def open(self) -> tuple[Restored, int]:
        """Open (or create) the database: what the previous run left, and the last row id."""
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
        (self._logged,) = db.execute("SELECT count(*) FROM state_log").fetchone()
        if self._logged:  # left by a stop that could not fold, or a crash
            try:
                with transaction(db):
                    self._fold(db)
            except sqlite3.Error as exc:  # a full disk: read the log beside tag_state
                log.warning("buffer %s: tag states left to fold later (%s)", self.path, exc)
        restored = Restored()
        unreadable: list[tuple[object, str]] = []  # tag, what of its state was dropped
        for name, seq, value, quality, ts in db.execute(_STATES):
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
        (last_id,) = db.execute("SELECT coalesce(max(id), 0) FROM outbox").fetchone()
        self.size_bytes = self._used_bytes()
        return restored, last_id

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

    def close(self) -> None:
        """Fold the logged tag states (an older version reads only ``tag_state``) and
        close; a disk that refuses the fold leaves them for the next start."""
        if self._db is None:
            return
        try:
            if self._logged:
                with transaction(self._db):
                    self._fold(self._db)
        except sqlite3.Error as exc:
            log.warning("buffer %s: tag states left to fold at the next start (%s)", self.path, exc)
        finally:
            self._db.close()
            self._db = None

    def _fold(self, db: sqlite3.Connection) -> None:
        """Write each tag's last logged state into ``tag_state`` and empty the log; in
        the caller's transaction."""
        db.execute(_FOLD)
        db.execute("DELETE FROM state_log")
        self._logged = 0

    def _used_bytes(self) -> int:
        assert self._db is not None
        (used,) = self._db.execute(
            "SELECT (page_count - freelist_count) * page_size"
            " FROM pragma_page_count(), pragma_freelist_count(), pragma_page_size()"
        ).fetchone()
        return int(used)

    def insert(
        self,
        messages: list[Message],
        states: list[TagState],
        alarms: list[AlarmState],
        marks: list[PollMark],
    ) -> tuple[int, int, int]:
        """Insert in one transaction; returns (first id, rows kept, oldest rows dropped)."""
        db = self._db
        assert db is not None
        try:
            return self._insert(db, messages, states, alarms, marks)
        except sqlite3.Error:
            with contextlib.suppress(sqlite3.Error):  # rolled back: count what stayed
                (self._logged,) = db.execute("SELECT count(*) FROM state_log").fetchone()
            raise

    def _insert(
        self,
        db: sqlite3.Connection,
        messages: list[Message],
        states: list[TagState],
        alarms: list[AlarmState],
        marks: list[PollMark],
    ) -> tuple[int, int, int]:
        dropped_old = 0
        last = 0
        with transaction(db):
            if self._logged and self.size_bytes >= self.max_size:
                self._fold(db)  # the log's pages are free again before anything is dropped
                self.size_bytes = self._used_bytes()
            keep = len(messages)
            if self.policy == "drop_newest" and self.size_bytes >= self.max_size:
                keep = 0
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
                    "INSERT INTO state_log (name, seq, value, quality, ts) VALUES {rows}",
                    [
                        # A float (but NaN, which SQLite keeps as NULL) is stored as a
                        # REAL, exactly, at a tenth of the cost of its JSON; the rest as JSON.
                        (
                            name,
                            seq,
                            value
                            if type(value) is float and not isnan(value)
                            else compact_json(value),
                            quality,
                            ts,
                        )
                        for name, seq, value, quality, ts in states
                    ],
                )
                self._logged += len(states)
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
            if self._logged >= FOLD_AFTER or (self._logged and used > self.max_size):
                self._fold(db)  # the log's pages are free again before anything is dropped
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
        (self.dropped_up_to,) = db.execute(
            "SELECT max(id) FROM (SELECT id FROM outbox ORDER BY id LIMIT ?)", (count,)
        ).fetchone()
        db.execute("DELETE FROM outbox WHERE id <= ?", (self.dropped_up_to,))
        return count

    def read(self, after: int, most: int) -> tuple[list[Queued], int | None, int]:
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
                self.delete(bad)
        return good, rows[-1][0] if rows else None, len(rows) - len(good)

    def delete(self, ids: list[int]) -> None:
        """Delete acknowledged rows; acks arrive nearly in order, so by ranges of ids."""
        db = self._db
        assert db is not None
        with transaction(db):
            db.executemany("DELETE FROM outbox WHERE id BETWEEN ? AND ?", id_ranges(ids))
        self.size_bytes = self._used_bytes()
