"""Tag names and globs of a config resolved into tags by browsing the server.

Patterns are ``gateway.core.globs`` globs: ``*``, ``?``, ``[..]`` within a level, ``**``
across levels. The walk starts at the deepest folder the pattern names literally and goes
down level by level, only into folders that can still match, so ``System1.Area1.*``
costs one browse, not a walk of the whole tree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gateway.core.globs import Glob, States
from gateway.core.models import TagInfo
from gateway.errors import WinCCNotFound
from gateway.wincc.base import WinCCClient
from gateway.wincc.concurrency import run_all


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
        tags = await _resolve(tree, Glob(pattern))
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


async def _resolve(tree: _Tree, glob: Glob) -> list[TagInfo]:
    """The tags ``glob`` matches: a walk of the tree driven by the glob's automaton.

    ``frontier`` holds the folders still to look into, each with the states it was
    reached in. The literal levels at the front are not browsed but stepped over.
    """
    start = min(glob.literal_levels, len(glob.levels) - 1)  # the last level is browsed
    if start > 0 and glob.accepts(frozenset({start})):
        # What is left matches nothing as well (``a.**``): the literal prefix may be a tag
        # itself, and only its parent's listing says so.
        start -= 1
    frontier: dict[str, States] = {".".join(glob.levels[:start]): frozenset({start})}
    found: dict[str, TagInfo] = {}
    while frontier:
        listing = await tree.children(set(frontier))
        following: dict[str, States] = {}
        for folder, states in frontier.items():
            for child in listing[folder]:
                after = glob.step(states, child.name.rpartition(".")[2])
                if child.type is not None and glob.accepts(after):
                    found[child.name] = child
                if child.has_children and glob.may_go_deeper(after):
                    following[child.name] = following.get(child.name, frozenset()) | after
        frontier = following
    return list(found.values())
