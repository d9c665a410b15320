"""Globs over dotted names: the one matcher for tag lists, allow-lists and ranges.

A pattern is split at ``.`` into levels. Each level is matched with ``fnmatchcase``
(``*``, ``?``, ``[..]`` stay within a level); a level that is exactly ``**`` matches zero or
more levels. ``[[poll]] tags`` resolves patterns with it by browsing, ``commands.writable``,
``commands.acknowledge`` and ``commands.ranges`` test names with it, so a pattern means the
same everywhere: ``System1.*.Setpoint`` never reaches ``System1.Area1.Tank1.Setpoint``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from fnmatch import fnmatchcase

ANY_LEVELS = "**"
_WILD = re.compile(r"[*?\[]")

States = frozenset[int]
"""Where a walk over a name's levels stands: the indexes of the pattern levels to match next."""


class Glob:
    """One compiled pattern: a small automaton whose states are pattern level indexes."""

    __slots__ = ("levels", "pattern")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.levels = pattern.split(".")

    def __repr__(self) -> str:
        return f"Glob({self.pattern!r})"

    @property
    def literal_levels(self) -> int:
        """How many leading levels are plain names (no wildcard): a walk may skip them."""
        return next(
            (i for i, level in enumerate(self.levels) if _WILD.search(level)), len(self.levels)
        )

    def step(self, states: States, segment: str) -> States:
        """The states after one more level of a name, ``segment``."""
        levels = self.levels
        after: set[int] = set()
        for state in self._closure(states):
            if state == len(levels):
                continue
            if levels[state] == ANY_LEVELS:
                after.add(state)  # ** takes this level and may take more
            elif fnmatchcase(segment, levels[state]):
                after.add(state + 1)
        return frozenset(after)

    def accepts(self, states: States) -> bool:
        """Whether the whole pattern is matched (a trailing ``**`` may match nothing)."""
        return len(self.levels) in self._closure(states)

    def may_go_deeper(self, states: States) -> bool:
        """Whether a longer name could still match: worth browsing a folder's children."""
        return any(state < len(self.levels) for state in states)

    def matches(self, name: str) -> bool:
        """Whether the dotted ``name`` matches, level by level."""
        states: States = frozenset({0})
        for segment in name.split("."):
            states = self.step(states, segment)
            if not states:
                return False
        return self.accepts(states)

    def _closure(self, states: Iterable[int]) -> set[int]:
        """``states`` plus those reached by letting ``**`` levels match nothing."""
        levels = self.levels
        closed = set(states)
        pending = list(closed)
        while pending:
            state = pending.pop()
            if state < len(levels) and levels[state] == ANY_LEVELS and state + 1 not in closed:
                closed.add(state + 1)
                pending.append(state + 1)
        return closed


def any_matches(globs: Iterable[Glob], name: str) -> bool:
    """Whether one of ``globs`` matches ``name`` (none given: nothing matches)."""
    return any(glob.matches(name) for glob in globs)
