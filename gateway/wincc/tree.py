"""A browsable tag tree from a flat list of dotted tag names, fetched once and reused.

Servers that list their tags flat (the classic REST service, WinCC Unified) are browsed
folder by folder like the others: the tree is built from the names and kept a while, so
resolving the globs costs one listing, not one per folder.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Iterable
from typing import Generic, TypeVar

from gateway.core.models import TagInfo, TagType

T = TypeVar("T")


class Cached(Generic[T]):
    """A value fetched on first use, shared by concurrent callers, kept for ``ttl`` seconds."""

    def __init__(self, fetch: Callable[[], Awaitable[T]], ttl: float) -> None:
        self._fetch = fetch
        self._ttl = ttl
        self._lock = asyncio.Lock()
        self._value: T | None = None
        self._expires = 0.0

    async def get(self) -> T:
        """The value, fetched again once it is older than ``ttl``."""
        async with self._lock:
            loop = asyncio.get_running_loop()
            if self._value is None or loop.time() >= self._expires:
                self._value = await self._fetch()
                self._expires = loop.time() + self._ttl
            return self._value


def tree_of(tags: Iterable[tuple[str, TagType | None]]) -> dict[str, list[TagInfo]]:
    """Folders (``""`` the root) and their children, from dotted tag names and types.

    A structure instance ``Tank1`` with members ``Tank1.Level`` becomes a folder; a tag
    whose name is also a prefix is a tag with children. Every tag counts as writable: a
    flat list does not say otherwise, and WinCC checks the user's rights when writing.
    """
    folders: dict[str, dict[str, TagInfo]] = {"": {}}
    for name, tag_type in tags:
        parent = ""
        levels = name.split(".")
        for depth in range(1, len(levels)):
            folder = ".".join(levels[:depth])
            siblings = folders[parent]
            known = siblings.get(folder)
            if known is None:
                siblings[folder] = TagInfo(folder, None, has_children=True, writable=False)
            elif not known.has_children:
                siblings[folder] = dataclasses.replace(known, has_children=True)
            folders.setdefault(folder, {})
            parent = folder
        known = folders[parent].get(name)
        folders[parent][name] = TagInfo(
            name, tag_type, has_children=known is not None and known.has_children, writable=True
        )
    return {folder: list(children.values()) for folder, children in folders.items()}
