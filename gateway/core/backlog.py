"""Whether publishing keeps up: the backlog must not keep growing while the broker is there.

A backlog built during a broker outage is store-and-forward doing its job, and one that
shrinks is being caught up with. One that grows for a whole window while the broker is
connected means the broker or this machine cannot take the sample rate: left alone, it
fills the buffer until its policy drops samples.
"""

from __future__ import annotations

from collections import deque
from enum import Enum


class BacklogChange(Enum):
    """A change of the publishing state worth one log line."""

    FALLING_BEHIND = "falling behind"
    CAUGHT_UP = "caught up"


class BacklogWatch:
    """Fed the backlog (messages waiting to be sent) now and then; says when it changes."""

    def __init__(self, window: float = 30.0, margin: int = 1000) -> None:
        self.window = window
        self.margin = margin  # growth that is noise: a poll's worth of samples
        self.behind = False
        self.growth = 0  # messages the backlog grew by over the last window
        self._seen: deque[tuple[float, int]] = deque()

    def observe(self, now: float, depth: int, *, connected: bool) -> BacklogChange | None:
        """Record the backlog at ``now`` (seconds); the change it makes, if any."""
        if not connected:
            self._seen.clear()  # an outage: the backlog grows by design
            return None
        seen = self._seen
        seen.append((now, depth))
        while len(seen) > 1 and seen[1][0] <= now - self.window:
            seen.popleft()
        since, before = seen[0]
        self.growth = depth - before
        if not self.behind:
            if now - since >= self.window and self.growth > self.margin:
                self.behind = True
                return BacklogChange.FALLING_BEHIND
        elif depth < before or depth <= self.margin:
            self.behind = False
            return BacklogChange.CAUGHT_UP
        return None
