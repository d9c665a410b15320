"""Which stretch of WinCC time a gap in the polls covers, and how much of it to fill.

Pure: the poller hands in its marks and clocks, and gets the window back.
"""

from __future__ import annotations

from typing import NamedTuple


class GapWindow(NamedTuple):
    """A gap (``start``, ``end``], WinCC's clock, epoch ms: (``start``, ``fill_from``] is
    older than ``max_gap`` and stays unfilled, (``fill_from``, ``end``] is filled."""

    start: int
    fill_from: int
    end: int


def gap_window(
    *, read_to_ms: int, read_at_ms: int, end_ms: int, now_ms: int, slack_ms: int, max_gap_ms: int
) -> GapWindow | None:
    """The gap since a good poll that read up to ``read_to_ms`` (WinCC's clock) at
    ``read_at_ms`` (the host's), until a poll whose newest source timestamp is ``end_ms``;
    None when there is nothing to fill.

    Both ends are WinCC timestamps, so a host clock off by hours changes nothing. They
    only move when a value changes, so in a quiet plant ``read_to_ms`` is old: the time
    that passed on the host's clock since that poll (plus ``slack_ms``) bounds the gap.
    """
    start = max(read_to_ms, end_ms - (now_ms - read_at_ms + slack_ms))
    if end_ms <= start:
        return None
    return GapWindow(start, max(start, end_ms - max_gap_ms), end_ms)
