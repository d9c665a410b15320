"""Bulk read answers compared as bytes with the chunk's last answer: the same result as
decoding them whole, whatever the server sends, and the same reading for an item that
did not change."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.core.models import ReadResult
from gateway.wincc import rest_answers
from gateway.wincc.rest_answers import ChunkAnswers
from gateway.wincc.rest_parse import parse_read_answer

TS = "2026-11-24T09:00:00.123Z"
NAMES = ["a", "b", "c", "d"]


def item(name: str, value: Any = 1.5, ts: str = TS, **more: Any) -> dict[str, Any]:
    return {"name": name, "value": value, "quality": 128, "timestamp": ts, **more}


def compact(items: list[Any]) -> bytes:
    return json.dumps({"values": items}, separators=(",", ":")).encode()


def spaced(items: list[Any]) -> bytes:
    return json.dumps({"values": items}).encode()


def pretty(items: list[Any]) -> bytes:
    return json.dumps({"values": items}, indent=2).encode()


def whole(names: list[str], body: bytes) -> ReadResult:
    return parse_read_answer(names, orjson.loads(body))


def test_an_unchanged_item_gives_the_same_reading_and_a_changed_one_a_new() -> None:
    answers = ChunkAnswers()
    first = answers.parse(NAMES, compact([item(n) for n in NAMES]))
    assert first is not None
    second = answers.parse(NAMES, compact([item(n, 2.5 if n == "c" else 1.5) for n in NAMES]))
    assert second is not None
    assert [r.name for r in second.readings] == NAMES
    for before, after in zip(first.readings, second.readings, strict=True):
        assert (after is before) == (after.name != "c")
    assert second.readings[2].value == 2.5


def test_indented_answers_are_compared_too() -> None:
    answers = ChunkAnswers()
    body = pretty([item(n) for n in NAMES])
    first = answers.parse(NAMES, body)
    again = answers.parse(NAMES, body)
    assert first is not None and again is not None
    assert first == whole(NAMES, body)
    assert all(a is b for a, b in zip(first.readings, again.readings, strict=True))


@pytest.mark.parametrize(
    "body",
    [
        compact([item("a", "x},{y"), item("b")]),  # a cut inside a string
        spaced([item("a", "x}, {\\"), item("b")]),  # spaced: cut where the spaces are
        compact([item("a", [{"nested": 1}, {"again": 2}]), item("b")]),  # cut inside
        compact([item("a"), 5, item("b")]),  # an item that is no object
    ],
)
def test_answers_whose_items_cannot_be_told_apart_are_decoded_whole(body: bytes) -> None:
    assert ChunkAnswers().parse(["a", "b"], body) is None


def test_a_compact_answer_is_cut_only_where_items_meet() -> None:
    """Cut at ``},{`` alone, a compact answer's string holding ``}, {`` stays whole."""
    body = compact([item("a", "x}, {\\"), item("b")])
    result = ChunkAnswers().parse(["a", "b"], body)
    assert result is not None
    assert result == whole(["a", "b"], body)
    assert result.readings[0].value == "x}, {\\"


@pytest.mark.parametrize(
    "body",
    [
        b'{"values": [], "more": 1}',
        b'{"values": []}',
        b'{"count": 2, "values": [{"name": "a"}]}',
        b'[{"name": "a"}]',
        b"",
        b'{"values": [{"name": "a"}], "values": [{"name": "b"}]}',  # the key twice
    ],
)
def test_answers_of_another_shape_are_decoded_whole(body: bytes) -> None:
    assert ChunkAnswers().parse(["a"], body) is None


def test_when_most_items_changed_their_list_is_decoded_in_one_go(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answers = ChunkAnswers()
    names = [f"tag{i}" for i in range(8)]
    assert answers.parse(names, compact([item(n) for n in names])) is not None
    few = compact([item(n, 2.5 if n == "tag0" else 1.5) for n in names])
    most = compact([item(n, 3.5) for n in names])
    expected = whole(names, few), whole(names, most)
    decoded: list[bytes] = []
    loads = orjson.loads

    def counted(text: bytes) -> Any:
        decoded.append(text)
        return loads(text)

    monkeypatch.setattr(rest_answers.orjson, "loads", counted)
    assert answers.parse(names, few) == expected[0]
    assert len(decoded) == 1, "one changed item of eight is decoded on its own"
    decoded.clear()
    assert answers.parse(names, most) == expected[1]
    assert len(decoded) == 1, "eight changed items are decoded as one list"
    assert decoded[0].startswith(b"[{")


def test_a_cut_that_fails_later_forgets_the_chunk() -> None:
    answers = ChunkAnswers()
    good = compact([item("a"), item("b")])
    assert answers.parse(["a", "b"], good) is not None
    assert answers.parse(["a", "b"], compact([item("a", "},{"), item("b")])) is None
    again = answers.parse(["a", "b"], good)
    assert again == whole(["a", "b"], good)


def test_another_chunk_of_the_same_first_name_and_size_is_not_mistaken_for_it() -> None:
    answers = ChunkAnswers()
    body = compact([item("a"), item("b")])
    assert answers.parse(["a", "b"], body) is not None
    other = answers.parse(["a", "x"], body)
    assert other == whole(["a", "x"], body)
    assert other is not None and other.errors == {"x": "missing from the server's answer"}


def test_the_memory_starts_over_past_its_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rest_answers, "MAX_CHUNKS", 2)
    answers = ChunkAnswers()
    bodies = {name: compact([item(name)]) for name in "abc"}
    first = {name: answers.parse([name], body) for name, body in bodies.items()}
    again = answers.parse(["a"], bodies["a"])
    assert first["a"] is not None and again is not None
    assert again.readings[0] is not first["a"].readings[0]  # forgotten when c came
    kept = answers.parse(["c"], bodies["c"])
    assert kept is not None and first["c"] is not None
    assert kept.readings[0] is first["c"].readings[0]


SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),  # JSON has neither
    st.text(alphabet='ab{}[],: "\\\n', max_size=8),
)
ITEM = st.one_of(
    st.builds(
        item,
        st.sampled_from([*NAMES, "zz"]),
        st.one_of(
            SCALAR,
            st.lists(SCALAR, max_size=2),
            st.dictionaries(st.text(max_size=2), SCALAR, max_size=2),
        ),
        st.sampled_from([TS, "2026-11-24T09:00:01Z", "never", "2026-11-24 10:00:00+01:00"]),
    ),
    st.builds(lambda name, error: {"name": name, "error": error}, st.sampled_from(NAMES), SCALAR),
    st.dictionaries(st.sampled_from(["name", "value", "quality", "timestamp"]), SCALAR, max_size=4),
    SCALAR,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    polls=st.lists(st.lists(ITEM, max_size=6), min_size=1, max_size=4),
    encode=st.sampled_from([compact, spaced, pretty]),
)
def test_poll_after_poll_the_result_is_that_of_decoding_the_answer_whole(
    polls: list[list[Any]], encode: Callable[[list[Any]], bytes]
) -> None:
    """Whatever a server answers, poll after poll (items repeated, changed, moved): the
    same readings and errors as decoding each answer whole, or None where that must be
    done."""
    answers = ChunkAnswers()
    for items in polls:
        for body in (encode(items), encode(items[1:] + items[:1]), encode(items)):
            parsed = answers.parse(NAMES, body)
            if parsed is not None:
                assert parsed == whole(NAMES, body)


TAGS = [f"tag{i}" for i in range(6)]
CHANGE = st.one_of(
    st.builds(lambda value: {"value": value}, SCALAR),
    st.builds(lambda: {"timestamp": "2026-11-24T09:00:02.500Z"}),
    st.builds(lambda error: {"error": error}, st.text(max_size=3)),
    st.builds(lambda name: {"name": name}, st.sampled_from([*TAGS, "zz"])),
    st.builds(lambda: {"quality": 0x48}),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    changes=st.lists(
        st.dictionaries(st.integers(0, len(TAGS) - 1), CHANGE, max_size=3), min_size=1, max_size=6
    ),
    encode=st.sampled_from([compact, spaced]),
)
def test_an_answer_of_readings_changed_item_by_item_is_that_of_decoding_it_whole(
    changes: list[dict[int, dict[str, Any]]], encode: Callable[[list[Any]], bytes]
) -> None:
    """The usual answer, one reading per tag asked for, poll after poll with a few items
    changed (a value, a time, a quality, an error, another name): the same result as
    decoding it whole, and the very readings of the items that did not change."""
    answers = ChunkAnswers()
    items = [item(name) for name in TAGS]
    last: ReadResult | None = answers.parse(TAGS, encode(items))
    assert last == whole(TAGS, encode(items))
    for change in changes:
        before = items
        items = [
            {**(item(TAGS[i]) if "error" in items[i] else items[i]), **change.get(i, {})}
            for i in range(len(TAGS))
        ]
        items = [
            {"name": it["name"], "error": it["error"]} if "error" in it else it for it in items
        ]
        body = encode(items)
        parsed = answers.parse(TAGS, body)
        if parsed is None:  # a field holding "},{": cannot be cut, decoded whole instead
            cut = re.compile(r"\}\s*,\s*\{")
            assert any(cut.search(json.dumps(field)) for it in items for field in it.values())
            last = None
            continue
        assert parsed == whole(TAGS, body)
        unique = all(len({it["name"] for it in poll}) == len(TAGS) for poll in (items, before))
        if unique and last is not None:  # no tag answered twice, then or now
            same = {
                now["name"]
                for now, then in zip(items, before, strict=True)
                if encode([now]) == encode([then])
            }
            earlier = {reading.name: reading for reading in last.readings}
            for reading in parsed.readings:
                if reading.name in same:
                    assert reading is earlier[reading.name]
        last = parsed
