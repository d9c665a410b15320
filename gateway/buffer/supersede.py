"""A standby that takes over drops what its buffer still holds from an earlier turn.

Those messages carry seqs the other instance has used since, and their samples are in the
WinCC archive: the takeover's backfill sends them again, in order, under the next seqs.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path


def supersede(path: Path) -> int:
    """Delete the buffered messages and poll marks of ``path``; how many messages."""
    if not path.exists():
        return 0
    with sqlite3.connect(path) as db:
        try:
            dropped = db.execute("DELETE FROM outbox").rowcount
            db.execute("DELETE FROM poll_mark")
        except sqlite3.OperationalError:  # a buffer not created yet has no tables
            return 0
    db.close()
    return max(0, dropped)
