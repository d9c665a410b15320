"""The durable buffer on a real SQLite file: order, acknowledgement, restart, overflow."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import stat
import threading
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from gateway.buffer import outbox, store
from gateway.buffer.outbox import DurableBuffer
from gateway.buffer.store import Message, PollMark, TagState
from gateway.errors import GatewayError
from tests.conftest import fill_disk, logged, make_read_only


def msgs(start: int, count: int, size: int = 10) -> list[Message]:
    return [
        Message(f"t/{i}", str(i).encode().ljust(size, b"."), 1, True)
        for i in range(start, start + count)
    ]


def topics(batch: list[tuple[int, Message]]) -> list[str]:
    return [message.topic for _, message in batch]


async def test_messages_come_out_in_order_and_acked_ones_are_gone_after_restart(
    tmp_path: Path,
) -> None:
    path = tmp_path / "b.db"
    buf = DurableBuffer(path, 10**9)
    await buf.open()
    await buf.append(msgs(0, 5), [("A", 3, 1.5, 128, 0)])
    first = await buf.take(3)
    assert topics(first) == ["t/0", "t/1", "t/2"]
    buf.ack(first)
    assert len(buf) == 2
    await buf.close()

    again = DurableBuffer(path, 10**9)
    restored = await again.open()
    assert restored.backlog == 2
    assert restored.seqs == {"A": 3}
    assert restored.last == {"A": (1.5, 128)}
    assert topics(await again.take(10)) == ["t/3", "t/4"]
    await again.close()


async def test_requeued_messages_go_out_first_in_their_order(tmp_path: Path) -> None:
    buf = DurableBuffer(tmp_path / "b.db", 10**9)
    await buf.open()
    await buf.append(msgs(0, 4))
    batch = await buf.take(2)
    buf.requeue(batch)
    assert topics(await buf.take(10)) == ["t/0", "t/1", "t/2", "t/3"]
    await buf.close()


async def test_a_backlog_larger_than_memory_is_read_back_from_disk_without_loss(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox, "CACHE_LIMIT", 50)
    buf = DurableBuffer(tmp_path / "b.db", 10**9)
    await buf.open()
    for start in range(0, 400, 40):
        await buf.append(msgs(start, 40))
    seen: list[str] = []
    appended_while_reading = False
    while len(seen) < 430:
        batch = await buf.take(33)
        seen += topics(batch)
        buf.ack(batch)
        if len(seen) >= 200 and not appended_while_reading:
            appended_while_reading = True
            await buf.append(msgs(400, 30))
    assert seen == [f"t/{i}" for i in range(430)]
    await buf.close()


async def test_drop_oldest_keeps_the_newest_and_counts(tmp_path: Path) -> None:
    buf = DurableBuffer(tmp_path / "b.db", 200_000, policy="drop_oldest")
    await buf.open()
    for start in range(0, 3000, 100):
        await buf.append(msgs(start, 100, size=500))
    assert buf.dropped > 0
    assert buf.size_bytes < 300_000
    remaining = []
    while batch := await _take_now(buf):
        remaining += topics(batch)
    assert remaining[-1] == "t/2999"
    assert "t/0" not in remaining
    assert len(remaining) + buf.dropped == 3000
    await buf.close()


async def test_drop_newest_keeps_the_backlog_and_counts(tmp_path: Path) -> None:
    buf = DurableBuffer(tmp_path / "b.db", 100_000, policy="drop_newest")
    await buf.open()
    for start in range(0, 3000, 100):
        await buf.append(msgs(start, 100, size=500), [("A", start + 100, start, 128, 0)])
    assert buf.dropped > 0
    remaining = []
    while batch := await _take_now(buf):
        remaining += topics(batch)
    assert remaining[0] == "t/0"
    assert "t/2999" not in remaining
    assert len(remaining) + buf.dropped == 3000
    await buf.close()
    restored = await DurableBuffer(tmp_path / "b.db", 200_000).open()
    assert restored.seqs == {"A": 3000}  # seqs advance even for dropped samples: no reuse


async def _take_now(buf: DurableBuffer) -> list[tuple[int, Message]]:
    buf.close_for_new()
    return await buf.take(1000)


def test_acknowledged_ids_are_deleted_as_contiguous_ranges() -> None:
    assert store.id_ranges([5, 3, 4, 9, 11, 10, 1]) == [(1, 1), (3, 5), (9, 11)]
    assert store.id_ranges([2, 2, 3]) == [(2, 3)]
    assert store.id_ranges([]) == []


async def test_acks_out_of_order_delete_exactly_the_acknowledged_rows(tmp_path: Path) -> None:
    buf = DurableBuffer(tmp_path / "b.db", 10**9)
    await buf.open()
    await buf.append(msgs(0, 10))
    batch = await buf.take(10)
    buf.ack([batch[i] for i in (7, 2, 3, 0, 9, 4)])
    await buf.close()
    again = DurableBuffer(tmp_path / "b.db", 10**9)
    assert (await again.open()).backlog == 4
    assert topics(await again.take(10)) == ["t/1", "t/5", "t/6", "t/8"]
    await again.close()


async def test_acknowledgements_arriving_one_by_one_are_deleted_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A PUBACK comes per message; a delete transaction per PUBACK cost more than the
    rest of a message's way. Those arriving within ``DELETE_EVERY`` share one delete."""
    path = tmp_path / "b.db"
    buf = DurableBuffer(path, 10**9)
    await buf.open()
    await buf.append(msgs(0, 200))
    deletes: list[int] = []
    delete = buf._store.delete
    all_deleted = threading.Event()

    def counted(ids: list[int]) -> None:
        deletes.append(len(ids))
        delete(ids)
        if sum(deletes) == 200:
            all_deleted.set()

    monkeypatch.setattr(buf._store, "delete", counted)
    async with asyncio.TaskGroup() as group:
        work = group.create_task(buf.run())
        for queued in await buf.take(200):
            buf.ack([queued])
            await asyncio.sleep(0.001)  # a PUBACK a millisecond, for 0.2 s or more
        assert await asyncio.to_thread(all_deleted.wait, 10)
        work.cancel()
    assert len(deletes) <= 1 + sum(deletes) // 50, deletes  # not one per few PUBACKs
    assert backlog_on_disk(path) == 0
    await buf.close()


async def test_committing_a_first_poll_of_tag_states_allocates_what_it_stores(
    tmp_path: Path,
) -> None:
    """A first poll commits every tag's state at once. Each encoded value must own only its
    few bytes: orjson's 4 KiB per result would make 5,000 states cost 20 MB, and glibc keeps
    such a peak as resident memory for the life of the process."""
    buf = DurableBuffer(tmp_path / "b.db", 10**9)
    await buf.open()
    states = [(f"System1.Tag{i}", 1, i * 0.5, 128, 0) for i in range(5000)]
    tracemalloc.start()
    try:
        await buf.append(msgs(0, 5000), states)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    await buf.close()
    assert peak < 8_000_000, f"peak {peak / 1e6:.1f} MB"


async def test_appends_made_together_share_a_transaction_and_keep_their_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks of a poll arrive together; one transaction each would make the last wait
    behind all the others on a busy machine."""
    buf = DurableBuffer(tmp_path / "b.db", 10**9)
    await buf.open()
    transactions: list[int] = []
    insert = buf._store.insert

    def counting(messages: list[Message], *rest: Any) -> tuple[int, int, int]:
        transactions.append(len(messages))
        return insert(messages, *rest)

    monkeypatch.setattr(buf._store, "insert", counting)
    await asyncio.gather(
        *(buf.append(msgs(10 * i, 10), [(f"T{i}", i + 1, i, 128, 0)]) for i in range(20))
    )
    assert sum(transactions) == 200
    assert len(transactions) <= 2, transactions
    assert topics(await buf.take(500)) == [f"t/{i}" for i in range(200)]
    await buf.close()
    again = DurableBuffer(tmp_path / "b.db", 10**9)
    restored = await again.open()
    assert restored.seqs == {f"T{i}": i + 1 for i in range(20)}
    await again.close()


def test_inserts_use_a_few_statement_shapes_whatever_the_row_count() -> None:
    """Every distinct statement stays prepared in the sqlite3 module's cache (128 of
    them); one shape per row count made a batch-mode gateway grow by 16 MB/s."""
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t (a, b)")
    shapes: set[str] = set()
    statements = 0

    class Recording:
        def execute(self, sql: str, params: list[Any]) -> sqlite3.Cursor:
            nonlocal statements
            shapes.add(sql)
            statements += 1
            return db.execute(sql, params)

    for count in range(1, 600):
        statements = 0
        rows = [(count, i) for i in range(count)]
        store.insert_rows(Recording(), "INSERT INTO t (a, b) VALUES {rows}", rows)  # type: ignore[arg-type]
        assert statements <= count // store.ROWS_PER_STATEMENT + 7
        inserted = db.execute("SELECT b FROM t WHERE a = ? ORDER BY rowid", (count,))
        assert [b for (b,) in inserted] == list(range(count))
    assert len(shapes) <= 8


async def test_a_tag_stated_twice_in_one_commit_keeps_its_last_state(tmp_path: Path) -> None:
    """A backfill commits several samples of one tag at once, oldest first."""
    buf = DurableBuffer(tmp_path / "b.db", 10**9)
    await buf.open()
    await buf.append(
        msgs(0, 3), [("A", 1, 1.0, 128, 0), ("B", 1, 5.0, 128, 0), ("A", 2, 2.0, 64, 0)]
    )
    await buf.close()
    again = DurableBuffer(tmp_path / "b.db", 10**9)
    restored = await again.open()
    await again.close()
    assert restored.seqs == {"A": 2, "B": 1}
    assert restored.last == {"A": (2.0, 64), "B": (5.0, 128)}


def state_rows(path: Path) -> tuple[int, dict[str, int]]:
    """Rows waiting in the state log, and each tag's seq in ``tag_state``."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        (logged,) = db.execute("SELECT count(*) FROM state_log").fetchone()
        return int(logged), dict(db.execute("SELECT name, seq FROM tag_state").fetchall())


def test_tag_states_are_logged_and_folded_every_so_many_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A change appends its tag's state; every ``FOLD_AFTER`` rows the last state of each
    tag is written into ``tag_state`` and the log starts over."""
    monkeypatch.setattr(store, "FOLD_AFTER", 10)
    path = tmp_path / "b.db"
    buffer = store.BufferStore(path, 10**9, policy="drop_oldest", sync="normal")
    buffer.open()
    for seq in range(1, 4):  # 3 commits of 3 tags: 9 rows, not folded yet
        buffer.insert([], [(tag, seq, float(seq), 128, seq) for tag in "ABC"], [], [])
    assert state_rows(path) == (9, {})
    buffer.insert([], [("A", 4, 4.0, 128, 4)], [], [])  # the tenth row: folded
    assert state_rows(path) == (0, {"A": 4, "B": 3, "C": 3})
    buffer.insert([], [("B", 4, 4.0, 128, 4)], [], [])
    buffer.close()  # a clean stop folds what is logged: older versions read tag_state
    assert state_rows(path) == (0, {"A": 4, "B": 4, "C": 3})


def test_tag_states_still_in_the_log_after_a_crash_are_restored(tmp_path: Path) -> None:
    """A gateway killed between two folds: the next start folds the log first, so every
    tag continues from its last committed seq."""
    path = tmp_path / "b.db"
    crashed = store.BufferStore(path, 10**9, policy="drop_oldest", sync="normal")
    crashed.open()
    crashed.insert([], [("A", 1, 1.0, 128, 1), ("B", 7, 2.0, 64, 2)], [], [])
    crashed.insert([], [("A", 2, 3.0, 128, 3)], [], [])
    assert state_rows(path) == (3, {})
    restarted = store.BufferStore(path, 10**9, policy="drop_oldest", sync="normal")
    restored, _ = restarted.open()  # while the first never folded: as after a SIGKILL
    assert restored.seqs == {"A": 2, "B": 7}
    assert restored.last == {"A": (3.0, 128), "B": (2.0, 64)}
    assert restored.stamps == {"A": 3, "B": 2}
    restarted.close()


def test_tag_states_left_in_the_log_are_restored_when_the_disk_is_full(small_disk: Path) -> None:
    """A crash, then a start on a full disk: the fold cannot be written, the states are
    read from the log beside ``tag_state`` all the same."""
    path = small_disk / "b.db"
    crashed = store.BufferStore(path, 10**9, policy="drop_oldest", sync="normal")
    crashed.open()
    crashed.insert([], [("A", 1, 1.0, 128, 1), ("B", 7, 2.0, 64, 2)], [], [])
    crashed.close()  # folded: A 1, B 7 in tag_state
    crashed.open()
    crashed.insert([], [(f"T{n}", n, float(n), 128, n) for n in range(2000)], [], [])
    crashed.insert([], [("A", 2, 3.0, 128, 3)], [], [])  # logged, not folded: a crash
    filler = fill_disk(small_disk)
    with logged("gateway.buffer", "tag states left to fold later") as warned:
        restarted = store.BufferStore(path, 10**9, policy="drop_oldest", sync="normal")
        restored, _ = restarted.open()
    assert warned.is_set()
    assert restored.seqs["A"] == 2 and restored.seqs["B"] == 7
    assert restored.last["A"] == (3.0, 128)
    assert restored.seqs["T1999"] == 1999
    restarted.close()
    filler.unlink()


async def test_a_small_buffer_folds_its_log_before_it_drops_a_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The log takes room in the buffer's limit; when that runs short, the log is folded
    (its pages free again) before any message is dropped for room."""
    monkeypatch.setattr(store, "FOLD_AFTER", 10**9)
    buf = DurableBuffer(tmp_path / "b.db", 100_000, policy="drop_newest")
    await buf.open()
    for seq in range(1, 31):  # 30 changes of 100 tags, with a small message each
        states: list[TagState] = [(f"tag-{n}", seq, float(seq), 128, seq) for n in range(100)]
        assert await buf.append(msgs(seq, 1), states)
    await buf.close()
    assert buf.storage_dropped == 0 and buf.dropped == 0
    again = DurableBuffer(tmp_path / "b.db", 10**9)
    restored = await again.open()
    await again.close()
    assert restored.backlog == 30
    assert set(restored.seqs.values()) == {30}


# --- a disk that runs full, files only the owner reads ---------------------------------


async def test_the_buffer_files_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    """Samples and tag states are plant data; the usual umask would let every local user
    read them."""
    umask = os.umask(0o022)
    try:
        buf = DurableBuffer(tmp_path / "b.db", 10**9)
        await buf.open()
        await buf.append(msgs(0, 3), [("A", 1, 1.0, 128, 0)])
        found = modes(tmp_path)
        await buf.close()
    finally:
        os.umask(umask)
    assert found == {"b.db": 0o600, "b.db-wal": 0o600, "b.db-shm": 0o600}


def modes(folder: Path) -> dict[str, int]:
    """The permission bits of the buffer's files."""
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.glob("b.db*")}


async def test_a_buffer_file_that_others_may_read_is_closed_to_them(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    path.touch(mode=0o644)
    path.chmod(0o644)
    buf = DurableBuffer(path, 10**9)
    await buf.open()
    await buf.append(msgs(0, 1))
    found = modes(tmp_path)
    await buf.close()
    assert found == {"b.db": 0o600, "b.db-wal": 0o600, "b.db-shm": 0o600}


class Watcher:
    """Records what the buffer says about the tag states it was given."""

    def __init__(self) -> None:
        self.stored: list[tuple[str, int]] = []
        self.lost: list[tuple[str, int]] = []

    def on_stored(self, states: list[TagState]) -> None:
        self.stored += [(name, seq) for name, seq, *_ in states]

    def on_lost(self, states: list[TagState]) -> None:
        self.lost += [(name, seq) for name, seq, *_ in states]


def other_writer_gets_in(path: Path) -> bool:
    """Whether another connection can start writing at once: no transaction of the
    buffer's is left open."""
    with contextlib.closing(sqlite3.connect(path, timeout=0, isolation_level=None)) as other:
        try:
            other.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:
            return False
        other.execute("ROLLBACK")
        return True


async def test_a_write_that_finds_the_disk_full_is_rolled_back_and_the_next_one_works(
    small_disk: Path,
) -> None:
    path = small_disk / "b.db"
    watcher = Watcher()
    buf = DurableBuffer(path, 10**9, on_stored=watcher.on_stored, on_lost=watcher.on_lost)
    await buf.open()
    await buf.append(msgs(0, 1), [("A", 1, 1.0, 128, 0)])
    filler = fill_disk(small_disk)
    with logged("gateway.buffer", "cannot store messages (database or disk is full)") as said:
        await buf.append(msgs(1, 2000, size=1000), [("A", 2, 2.0, 128, 0), ("B", 1, 0.0, 128, 0)])
    assert said.is_set()
    assert buf.storage_error == "database or disk is full"
    assert (buf.storage_dropped, buf.dropped, len(buf)) == (2000, 0, 1)
    assert watcher.lost == [("A", 2), ("B", 1)]
    assert other_writer_gets_in(path)

    filler.unlink()
    with logged("gateway.buffer", "stores messages again") as healed:
        await buf.append(msgs(2001, 2), [("A", 2, 3.0, 128, 0)])
    assert healed.is_set()
    assert buf.storage_error is None
    assert watcher.stored == [("A", 1), ("A", 2)]
    assert topics(await _take_now(buf)) == ["t/0", "t/2001", "t/2002"]
    await buf.close()
    restored = await DurableBuffer(path, 10**9).open()
    assert restored.seqs == {"A": 2}
    assert restored.last == {"A": (3.0, 128)}


async def test_appends_that_build_on_a_lost_commit_are_dropped_with_it(small_disk: Path) -> None:
    """A tag's next sample, appended while the commit of the one before is under way, has
    the next seq: stored alone it would leave a seq gap behind the lost one."""
    watcher = Watcher()
    buf = DurableBuffer(
        small_disk / "b.db", 10**9, on_stored=watcher.on_stored, on_lost=watcher.on_lost
    )
    await buf.open()
    gate = threading.Event()
    # The buffer's one thread waits for the test, so the first commit stays under way.
    held = asyncio.ensure_future(buf._run(gate.wait))
    first = asyncio.create_task(buf.append(msgs(0, 2000, size=1000), [("A", 1, 1.0, 128, 0)]))
    await asyncio.sleep(0)  # the append opens its batch and starts its commit
    assert buf._open_batch is not None
    await asyncio.sleep(0)  # the commit takes the batch, then waits at the gate
    assert buf._open_batch is None
    later = asyncio.create_task(buf.append(msgs(2000, 1), [("A", 2, 2.0, 128, 0)]))
    apart = asyncio.create_task(buf.append(msgs(2001, 1), [("B", 1, 5.0, 128, 0)]))
    await asyncio.sleep(0)
    filler = fill_disk(small_disk)
    gate.set()
    await asyncio.gather(held, first, later, apart)
    assert watcher.lost == [("A", 1), ("A", 2), ("B", 1)]
    assert buf.storage_dropped == 2002
    filler.unlink()
    await buf.close()
    assert (await DurableBuffer(small_disk / "b.db", 10**9).open()).seqs == {}


async def test_acknowledged_messages_are_deleted_once_the_disk_has_room_again(
    small_disk: Path,
) -> None:
    path = small_disk / "b.db"
    buf = DurableBuffer(path, 10**9)
    await buf.open()
    await buf.append(msgs(0, 300, size=1000))
    async with asyncio.TaskGroup() as group:
        work = group.create_task(buf.run())
        filler = fill_disk(small_disk)
        with logged("gateway.buffer", "cannot delete acknowledged messages") as failing:
            buf.ack(await buf.take(300))
            await asyncio.wait_for(failing.wait(), 10)
        assert buf.storage_error == "database or disk is full"
        assert backlog_on_disk(path) == 300
        with logged("gateway.buffer", "stores messages again") as healed:
            filler.unlink()
            await asyncio.wait_for(healed.wait(), 10)
        assert buf.storage_error is None
        assert backlog_on_disk(path) == 0
        work.cancel()
    await buf.close()


def backlog_on_disk(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return int(db.execute("SELECT count(*) FROM outbox").fetchone()[0])


async def test_a_bug_in_the_background_deletes_is_not_swallowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Storage errors are retried; anything else is a bug that must stop the gateway
    (its TaskGroup) rather than let the disk fill up unnoticed."""
    buf = DurableBuffer(tmp_path / "b.db", 10**9)
    await buf.open()
    await buf.append(msgs(0, 5))

    def broken(_ids: list[int]) -> None:
        raise RuntimeError("a bug in the deletes")

    monkeypatch.setattr(buf._store, "delete", broken)
    with pytest.raises(ExceptionGroup) as caught:
        async with asyncio.timeout(10), asyncio.TaskGroup() as group:
            group.create_task(buf.run())
            buf.ack(await buf.take(5))
    assert caught.group_contains(RuntimeError, match="a bug in the deletes")


async def test_a_buffer_on_a_read_only_volume_is_refused_at_start(small_disk: Path) -> None:
    """Opened read-only, every later write would fail: the gateway must not start as if
    it could store samples."""
    path = small_disk / "b.db"
    buf = DurableBuffer(path, 10**9)
    await buf.open()
    await buf.append(msgs(0, 1), [("A", 1, 1.0, 128, 0)])
    await buf.close()
    make_read_only(small_disk)
    with pytest.raises(
        GatewayError, match=rf"buffer\.path {path}: cannot open: Read-only file system"
    ):
        await DurableBuffer(path, 10**9).open()


OLD_SCHEMA = """
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, payload BLOB NOT NULL,
    qos INTEGER NOT NULL, retain INTEGER NOT NULL
);
CREATE TABLE tag_state (
    name TEXT PRIMARY KEY, seq INTEGER NOT NULL, value BLOB, quality INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE alarm_state (id TEXT PRIMARY KEY, body BLOB NOT NULL) WITHOUT ROWID;
INSERT INTO tag_state VALUES ('A', 7, '2.5', 192);
"""


async def test_a_buffer_from_an_older_version_keeps_its_state_and_gains_marks(
    tmp_path: Path,
) -> None:
    path = tmp_path / "b.db"
    with sqlite3.connect(path) as db:
        db.executescript(OLD_SCHEMA)
    buf = DurableBuffer(path, 10**9)
    restored = await buf.open()
    assert (restored.seqs, restored.last) == ({"A": 7}, {"A": (2.5, 192)})
    assert (restored.stamps, restored.marks) == ({}, {})
    await buf.append(msgs(0, 1), [("B", 1, 1.0, 192, 1_000)], marks=[PollMark("fast", 900, 5)])
    await buf.append([], marks=[PollMark("fast", 1_200, 6)])
    await buf.close()
    again = DurableBuffer(path, 10**9)
    restored = await again.open()
    assert restored.seqs == {"A": 7, "B": 1}
    assert restored.stamps == {"B": 1_000}
    assert restored.marks == {"fast": PollMark("fast", 1_200, 6)}
    await again.close()


async def test_close_waits_for_a_commit_whose_appender_was_cancelled(tmp_path: Path) -> None:
    """A poller stopped mid-append must not lose what it handed over: the buffer owns the
    commit and closes only after it."""
    buf = DurableBuffer(tmp_path / "b.db", 10**9)
    await buf.open()
    appender = asyncio.create_task(buf.append(msgs(0, 3)))
    await asyncio.sleep(0)  # the commit is scheduled, not yet on the disk
    appender.cancel()
    await buf.close()

    again = DurableBuffer(tmp_path / "b.db", 10**9)
    await again.open()
    try:
        again.close_for_new()
        assert topics(await again.take(10)) == [m.topic for m in msgs(0, 3)]
    finally:
        await again.close()


@pytest.mark.parametrize("fold", [True, False])
async def test_last_values_come_back_exactly_with_their_type(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fold: bool
) -> None:
    """Floats are stored as themselves, everything else as JSON: after a restart each
    tag's last value is the very value and type it was, logged or folded (a change of
    type or of the last bit would publish an unchanged value again, or hide a change)."""
    if not fold:  # a crash before the fold: the restart reads the log
        monkeypatch.setattr(store.BufferStore, "_fold", lambda self, db: None)
    values: list[Any] = [
        0.1 + 0.2,
        -0.0,
        5e-324,
        1.0,
        1,
        True,
        "1.5",
        None,
        2**63 - 1,
        1.7976931348623157e308,
    ]
    buf = DurableBuffer(tmp_path / "b.db", 10**9)
    await buf.open()
    await buf.append(msgs(0, 1), [(f"T{i}", 1, v, 128, 0) for i, v in enumerate(values)])
    await buf.close()
    again = DurableBuffer(tmp_path / "b.db", 10**9)
    restored = await again.open()
    await again.close()
    for i, value in enumerate(values):
        back, quality = restored.last[f"T{i}"]
        assert (type(back), repr(back), quality) == (type(value), repr(value), 128)
