"""Capped exponential backoff with full jitter, for every reconnect and retry loop.

Full jitter (a uniform draw between 0 and the exponential ceiling) spreads a fleet of
gateways that lost the same broker, so they do not all come back in the same second.
"""

from __future__ import annotations

import random


class Backoff:
    """Delays for successive failed attempts: uniform in [floor, min(cap, base * 2**n)]."""

    __slots__ = ("_attempt", "_base", "_cap", "_floor")

    def __init__(self, base: float = 0.5, cap: float = 30.0, floor: float = 0.05) -> None:
        self._base = base
        self._cap = cap
        self._floor = floor
        self._attempt = 0

    def next_delay(self) -> float:
        """The delay before the next attempt; never zero, so a loop can never spin."""
        ceiling = min(self._cap, self._base * 2**self._attempt)
        self._attempt = min(self._attempt + 1, 32)
        return max(self._floor, random.uniform(0, ceiling))

    def reset(self) -> None:
        """Start from the base again after a success."""
        self._attempt = 0
