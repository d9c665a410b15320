"""How long the oldest message in the buffer has waited, without a timestamp per message.

The buffer remembers, at most once a second, the highest row id committed and when; a
message's age is then known to about a second, for a few bytes per second of backlog.
"""

from __future__ import annotations

from collections import deque

RESOLUTION = 1.0
"""Seconds between two remembered commits: the precision of the age."""


class AgeTrail:
    """Commit times by row id, dropped once the broker took (or the policy dropped) them."""

    def __init__(self) -> None:
        self._marks: deque[tuple[int, float]] = deque()  # (first row id, monotonic time)
        self._gone_up_to = 0
        self._last = 0

    def committed(self, first: int, last: int, now: float) -> None:
        """Rows ``first`` to ``last`` were committed at ``now``."""
        self._last = max(self._last, last)
        if not self._marks or now - self._marks[-1][1] >= RESOLUTION:
            self._marks.append((first, now))

    def gone(self, up_to: int) -> None:
        """Rows up to ``up_to`` left the buffer (acknowledged or dropped)."""
        self._gone_up_to = max(self._gone_up_to, up_to)
        marks = self._marks
        if self._gone_up_to >= self._last:
            marks.clear()
        while len(marks) > 1 and marks[1][0] <= self._gone_up_to + 1:
            marks.popleft()

    def oldest_age(self, now: float, depth: int) -> float:
        """Seconds the oldest waiting message has waited; 0 with nothing waiting."""
        if depth <= 0 or not self._marks:
            return 0.0
        return max(0.0, now - self._marks[0][1])
