"""Which of several redundant endpoints (broker cluster nodes, WinCC server pairs) to try
next, and when a whole round of them has failed.

Pure: the caller connects and reports the outcome. A failed endpoint hands over to the next
at once; only when every endpoint failed in a row does the caller pause (its jittered
backoff counts rounds, not endpoints), so a cluster with one dead node costs no waiting.
"""

from __future__ import annotations

from collections.abc import Sequence


class Rotation:
    """Cycles through endpoints in order, starting with the first."""

    __slots__ = ("_endpoints", "_failed", "_index")

    def __init__(self, endpoints: Sequence[str]) -> None:
        if not endpoints:
            raise ValueError("a rotation needs at least one endpoint")
        self._endpoints = list(endpoints)
        self._index = 0
        self._failed = 0

    @property
    def current(self) -> str:
        """The endpoint to use (or try) now."""
        return self._endpoints[self._index]

    @property
    def several(self) -> bool:
        """More than one endpoint: a failure can hand over to another."""
        return len(self._endpoints) > 1

    def succeeded(self) -> None:
        """The current endpoint answered: the next failure starts a new round."""
        self._failed = 0

    def select(self, endpoint: str) -> None:
        """Use ``endpoint`` from now on (one of the endpoints), starting a new round."""
        self._index = self._endpoints.index(endpoint)
        self._failed = 0

    def failed(self) -> bool:
        """The current endpoint failed: move to the next one. True when this completes a
        round (every endpoint failed since the last success or pause): time to back off."""
        self._index = (self._index + 1) % len(self._endpoints)
        self._failed += 1
        if self._failed >= len(self._endpoints):
            self._failed = 0
            return True
        return False
