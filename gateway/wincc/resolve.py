"""Tag names and globs of a config resolved into tags by browsing the server.

A pattern is split at ``.`` into levels. Each level is matched with ``fnmatchcase``
(``*``, ``?``, ``[..]`` stay within a level); a level that is exactly ``**`` matches zero or
more levels. The walk starts at the deepest folder the pattern names literally and goes
down level by level, only into folders that can still match, so ``System1.Area1.*``
costs one browse, not a walk of the whole tree.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from gateway.errors import WinCCNotFound
from gateway.wincc.base import WinCCClient
from gateway.wincc.concurrency import run_all
from gateway.wincc.models import TagInfo

ANY_LEVELS = "**"
_GLOB = re.compile(r"[*?\[]")


@dataclass(slots=True, frozen=True)
class ResolveResult:
    """The tags found, sorted by name without duplicates, and the patterns that found none."""

    tags: list[TagInfo]
    unmatched: list[str]


async def resolve_tags(client: WinCCClient, patterns: Sequence[str]) -> ResolveResult:
    """Resolve names and globs into the tags (leaves) they match.

    Folders are browsed at most once however many patterns pass them; the browses of
    one level run concurrently, bounded by the client's own request limit.
    """
    tree = _Tree(client)
    found: dict[str, TagInfo] = {}
    unmatched: list[str] = []
    for pattern in dict.fromkeys(patterns):
        tags = await _resolve(tree, pattern)
        if not tags:
            unmatched.append(pattern)
        found.update((tag.name, tag) for tag in tags)
    return ResolveResult([found[name] for name in sorted(found)], unmatched)


class _Tree:
    """The browse results seen so far; a missing folder reads as an empty one."""

    def __init__(self, client: WinCCClient) -> None:
        self._client = client
        self._children: dict[str, list[TagInfo]] = {}

    async def children(self, folders: set[str]) -> dict[str, list[TagInfo]]:
        """The children of every folder in ``folders``, browsing the unseen ones at once."""
        unseen = sorted(folders.difference(self._children))
        for folder, children in zip(
            unseen, await run_all([self._browse(folder) for folder in unseen]), strict=True
        ):
            self._children[folder] = children
        return {folder: self._children[folder] for folder in folders}

    async def _browse(self, folder: str) -> list[TagInfo]:
        try:
            return await self._client.browse(folder)
        except WinCCNotFound:
            return []


async def _resolve(tree: _Tree, pattern: str) -> list[TagInfo]:
    """The tags ``pattern`` matches: a walk of the tree driven by a small NFA over levels.

    A state is the index of the next pattern level to match; ``frontier`` holds the
    folders still to look into, each with the states it was reached in.
    """
    levels = pattern.split(".")
    literal = next((i for i, level in enumerate(levels) if _GLOB.search(level)), len(levels))
    start = min(literal, len(levels) - 1)  # at least the last level is matched by browsing
    frontier: dict[str, set[int]] = {".".join(levels[:start]): {start}}
    found: dict[str, TagInfo] = {}
    while frontier:
        listing = await tree.children(set(frontier))
        following: dict[str, set[int]] = {}
        for folder, states in frontier.items():
            for child in listing[folder]:
                after = _step(levels, states, child.name.rpartition(".")[2])
                if child.type is not None and _accepts(levels, after):
                    found[child.name] = child
                alive = {state for state in after if state < len(levels)}
                if child.has_children and alive:
                    following.setdefault(child.name, set()).update(alive)
        frontier = following
    return list(found.values())


def _closure(levels: list[str], states: set[int]) -> set[int]:
    """``states`` plus those reached by letting ``**`` levels match nothing."""
    closed = set(states)
    pending = list(states)
    while pending:
        state = pending.pop()
        if state < len(levels) and levels[state] == ANY_LEVELS and state + 1 not in closed:
            closed.add(state + 1)
            pending.append(state + 1)
    return closed


def _step(levels: list[str], states: set[int], segment: str) -> set[int]:
    """The states after matching one name ``segment`` from ``states``."""
    after: set[int] = set()
    for state in _closure(levels, states):
        if state == len(levels):
            continue
        if levels[state] == ANY_LEVELS:
            after.add(state)  # ** takes this level and may take more
        elif fnmatchcase(segment, levels[state]):
            after.add(state + 1)
    return after


def _accepts(levels: list[str], states: set[int]) -> bool:
    """Whether the whole pattern is matched (trailing ``**`` may match nothing)."""
    return len(levels) in _closure(levels, states)
