"""Bulk read answers compared item by item, as bytes, with the same chunk's last answer.

Polling asks for the same chunks of names every interval, and between two polls most
tags have not changed: their items come back byte for byte as before. Decoding the
whole answer and looking every tag up again was most of a poll's cost; here an answer
is cut into its items first, an item identical to the one at its place last time stands
for what it said then, and only the others are decoded.

The cut is trusted only when it is proven right: the answer must be
``{"values": [{...}, {...}]}`` (any whitespace) and every piece, braced again, must
decode on its own as a JSON object. Then the pieces are exactly the list's items, since
objects joined by commas are a valid list of them. A piece holding ``},{`` inside a
string fails to decode, and an answer of another shape does not match: both are
decoded whole, as before, and nothing is remembered for them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from gateway.core.models import ReadResult
from gateway.wincc.rest_parse import Outcome, collect_outcomes, item_outcome

_ANSWER = re.compile(rb'\s*\{\s*"values"\s*:\s*\[\s*\{(.*)\}\s*\]\s*\}\s*', re.DOTALL)
"""A bulk read answer holding only a list of at least one item; group 1: the list
between its first item's opening brace and its last item's closing one."""

_BETWEEN = re.compile(rb"\}\s*,\s*\{")
"""Where one item ends and the next begins, as far as the bytes tell."""

MAX_CHUNKS = 4096
"""Chunks remembered at most (4,096,000 tags at the default ``batch_size``); past it, as
after reloads that changed the tag lists, the memory starts over rather than grow."""


@dataclass(slots=True)
class _Answer:
    """One chunk's last answer: the names asked for, the items as bytes, what each said."""

    names: Sequence[str]
    items: list[bytes]
    outcomes: list[Outcome]


class ChunkAnswers:
    """The last answer of every chunk of names a client reads, to compare the next with."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: dict[tuple[str, int], _Answer] = {}

    def parse(self, names: Sequence[str], body: bytes) -> ReadResult | None:
        """The readings and errors of ``body``, the answer to reading ``names``; None
        when its items cannot be told apart as bytes (decode it whole then)."""
        found = _ANSWER.fullmatch(body)
        if found is None or not names:
            return None
        items = _BETWEEN.split(found.group(1))
        key = (names[0], len(names))
        last = self._last.get(key)
        same_chunk = last is not None and last.names == names and len(last.items) == len(items)
        before = last.items if last is not None and same_chunk else []
        said = last.outcomes if last is not None and same_chunk else []
        outcomes: list[Outcome] = []
        for index, item in enumerate(items):
            if before and item == before[index]:
                outcomes.append(said[index])
                continue
            try:
                decoded = orjson.loads(b"{" + item + b"}")
            except orjson.JSONDecodeError:
                self._last.pop(key, None)
                return None
            outcomes.append(item_outcome(decoded))
        if last is None and len(self._last) >= MAX_CHUNKS:
            self._last.clear()
        self._last[key] = _Answer(names, items, outcomes)
        return collect_outcomes(names, outcomes)
