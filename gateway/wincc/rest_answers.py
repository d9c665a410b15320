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

When many items changed (in a busy plant, most of them), decoding them one by one costs
more than decoding the list in one go. That is exact too when the list decodes into as
many objects as the cut found pieces: every boundary between two objects is one the cut
finds, so a piece more would have been a cut inside a string.
"""

from __future__ import annotations

import itertools
import operator
import re
from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from gateway.core.models import Lineage, Reading, ReadResult
from gateway.wincc.rest_parse import Outcome, collect_outcomes, item_outcome

_ANSWER = re.compile(rb'\s*\{\s*"values"\s*:\s*\[\s*\{(.*)\}\s*\]\s*\}\s*', re.DOTALL)
"""A bulk read answer holding only a list of at least one item; group 1: the list
between its first item's opening brace and its last item's closing one."""

_BETWEEN = re.compile(rb"\}\s*,\s*\{")
"""Where one item ends and the next begins, as far as the bytes tell. Compact answers
are cut at ``},{`` instead, in a third of the time, when that gives one piece per name
asked for; the pieces prove themselves the same way either way."""

WHOLE_SHARE = 0.25
"""Share of changed items past which the list is decoded in one go: an item decoded on
its own costs about four times its share of the whole list's decoding."""

_NUMBERS = itertools.count(1)
"""Numbers the answers, for the lineage of their results: unique in the process."""

MAX_CHUNKS = 4096
"""Chunks remembered at most (4,096,000 tags at the default ``batch_size``); past it, as
after reloads that changed the tag lists, the memory starts over rather than grow."""


@dataclass(slots=True)
class _Answer:
    """One chunk's last answer: its number, the names asked for, the items as bytes, what
    each said, and, when every item was a reading of another name asked for and none was
    left out (the usual answer), those readings in the items' order."""

    number: int
    names: Sequence[str]
    items: list[bytes]
    outcomes: list[Outcome]
    readings: list[Reading] | None


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
        listed = found.group(1)
        items = listed.split(b"},{")
        if len(items) != len(names):  # items spaced apart, or a name answered twice
            items = _BETWEEN.split(listed)
        key = (names[0], len(names))
        last = self._last.get(key)
        if last is not None and (last.names != names or len(last.items) != len(items)):
            last = None
        changed: Sequence[int] = (
            range(len(items))
            if last is None
            else list(itertools.compress(itertools.count(), map(operator.ne, items, last.items)))
        )
        try:
            said = _said(listed, items, changed)
        except orjson.JSONDecodeError:
            self._last.pop(key, None)
            return None
        if last is None:
            outcomes: list[Outcome] = [None] * len(items)
        else:
            if last.readings is not None:
                replaced = _usual(last.outcomes, last.readings, changed, said)
                if replaced is not None:
                    outcomes, readings = replaced
                    number = next(_NUMBERS)
                    self._last[key] = _Answer(number, names, items, outcomes, readings)
                    fresh = [readings[index] for index in changed]
                    result = readings.copy()
                    return ReadResult(
                        result, lineages=[Lineage(key, number, result, last.number, fresh)]
                    )
            outcomes = last.outcomes.copy()
        for index, outcome in zip(changed, said, strict=True):
            outcomes[index] = outcome
        return self._remember(key, names, items, outcomes)

    def _remember(
        self,
        key: tuple[str, int],
        names: Sequence[str],
        items: list[bytes],
        outcomes: list[Outcome],
    ) -> ReadResult:
        """Remember the answer and collect its result, which follows no earlier one."""
        result = collect_outcomes(names, outcomes)
        usual = not result.errors and len(result.readings) == len(items)
        if key not in self._last and len(self._last) >= MAX_CHUNKS:
            self._last.clear()
        readings = result.readings.copy() if usual else None
        number = next(_NUMBERS)
        self._last[key] = _Answer(number, names, items, outcomes, readings)
        result.lineages = [Lineage(key, number, result.readings)]
        return result


def _usual(
    outcomes: list[Outcome], readings: list[Reading], changed: Sequence[int], fresh: list[Outcome]
) -> tuple[list[Outcome], list[Reading]] | None:
    """The usual answer: last time's outcomes and readings with the ``fresh`` outcomes
    of the ``changed`` items put in; None when one of those is no longer a reading of the
    same tag."""
    outcomes = outcomes.copy()
    readings = readings.copy()
    for index, outcome in zip(changed, fresh, strict=True):
        before = outcomes[index]
        if outcome is None or before is None or outcome[0] != before[0]:
            return None
        said = outcome[1]
        if isinstance(said, str):
            return None
        outcomes[index] = outcome
        readings[index] = said
    return outcomes, readings


def _said(listed: bytes, items: list[bytes], changed: Sequence[int]) -> list[Outcome]:
    """What the ``changed`` items say, in their order; ``JSONDecodeError`` when one of
    them is no object on its own. Past ``WHOLE_SHARE`` of the items, the ``listed``
    items are decoded in one go, kept when they are as many objects as pieces."""
    if len(changed) > WHOLE_SHARE * len(items):
        values = orjson.loads(b"[{" + listed + b"}]")
        if len(values) == len(items) and all(type(value) is dict for value in values):
            return [item_outcome(values[index]) for index in changed]
    return [_decoded(items[index]) for index in changed]


def _decoded(item: bytes) -> Outcome:
    """What one item said; ``JSONDecodeError`` when it is no object on its own."""
    return item_outcome(orjson.loads(b"{" + item + b"}"))
