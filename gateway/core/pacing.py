"""Publishing paced under a broker's per-connection limits (messages and bytes a second).

Cloud brokers throttle or disconnect a connection that publishes faster than its limit.
A ``RateLimit`` keeps a connection under one: it never lets more than ``limit`` units go
in any window of one second (a log of what went in the last second), and spreads them
evenly with a token bucket that refills slightly below the limit, so that the arrivals a
broker counts stay under the limit even when the network bunches a few messages. What
cannot go yet waits in the store-and-forward buffer. Pure: the caller passes the time.
"""

from __future__ import annotations

from collections import deque

WINDOW = 1.0
"""Seconds over which the limit is counted."""

STEADY = 0.98
"""Share of the limit the bucket refills at: the margin that absorbs network jitter."""

BURST = 0.05
"""Share of a second's limit that may go at once (catching up after a late wake-up)."""

EPSILON = 1e-9
"""Seconds (and units) below which float rounding is not a reason to wait."""


class RateLimit:
    """At most ``limit`` units (messages, or bytes) in any one-second window, spread out."""

    def __init__(self, limit: float) -> None:
        if limit <= 0:
            raise ValueError("a rate limit is positive")
        self.limit = limit
        self._refill = limit * STEADY / WINDOW
        self._size = max(1.0, limit * BURST)
        self._tokens = self._size
        self._at: float | None = None
        self._sent: deque[tuple[float, float]] = deque()  # (time, amount) in the window
        self._in_window = 0.0

    def _advance(self, now: float) -> None:
        if self._at is not None and now > self._at:
            self._tokens = min(self._size, self._tokens + (now - self._at) * self._refill)
        if self._at is None or now > self._at:
            self._at = now
        while self._sent and self._sent[0][0] <= now - WINDOW + EPSILON:
            self._in_window -= self._sent.popleft()[1]
        if not self._sent:
            self._in_window = 0.0  # no drift from float sums

    def wait(self, now: float, amount: float = 1.0) -> float:
        """Seconds until ``amount`` may go; 0.0 when it may go now. An amount larger
        than the bucket (one big message) goes once the bucket is full and nothing else
        is in the window, and leaves the bucket in debt: the limit holds on average."""
        if amount <= 0:
            return 0.0
        self._advance(now)
        waits = [0.0]
        needed = min(amount, self._size)
        if self._tokens + EPSILON < needed:
            waits.append((needed - self._tokens) / self._refill)
        if self._sent and self._in_window + amount > self.limit + EPSILON:
            waits.append(self._window_wait(now, amount))
        wait = max(waits)
        return wait if wait > EPSILON else 0.0

    def _window_wait(self, now: float, amount: float) -> float:
        """Until enough of what went in the last second has left the window."""
        excess = self._in_window + amount - self.limit
        for at, spent in self._sent:
            excess -= spent
            if excess <= 0:
                return at + WINDOW - now
        return self._sent[-1][0] + WINDOW - now  # the window empties

    def spend(self, now: float, amount: float = 1.0) -> None:
        """Record that ``amount`` went now."""
        self._advance(now)
        self._tokens -= amount
        self._sent.append((now, amount))
        self._in_window += amount

    def room(self, now: float) -> int:
        """Whole units that may go now, one after the other."""
        self._advance(now)
        by_bucket = int(self._tokens + EPSILON)
        return max(0, min(by_bucket, int(self.limit - self._in_window + EPSILON)))


class Pacer:
    """A connection's limits: messages a second and, optionally, bytes a second."""

    def __init__(self, messages: float, bytes_per_s: float | None = None) -> None:
        self.messages = RateLimit(messages)
        self.bytes = RateLimit(bytes_per_s) if bytes_per_s is not None else None

    def room(self, now: float) -> int:
        """Messages that may go now by the message limit (bytes are checked per message)."""
        return self.messages.room(now)

    def wait(self, now: float, size: int) -> float:
        """Seconds until a message of ``size`` bytes may go; 0.0 when it may go now."""
        wait = self.messages.wait(now)
        if self.bytes is not None:
            wait = max(wait, self.bytes.wait(now, size))
        return wait

    def spend(self, now: float, size: int) -> None:
        """Record a message of ``size`` bytes sent now."""
        self.messages.spend(now)
        if self.bytes is not None:
            self.bytes.spend(now, size)
