"""The reading memo of the polling path: the same object while nothing differs."""

import pytest

from gateway.core.timestamps import parse_ts
from gateway.wincc.memo import ReadingMemo

TS = "2026-11-24T10:00:00.123Z"
LATER = "2026-11-24T10:00:01.500+00:00"


def test_an_unchanged_tag_gets_the_same_reading_back() -> None:
    memo = ReadingMemo()
    first = memo.reading("A", 1.5, 128, TS)
    assert first.ts_ms == parse_ts(TS)
    assert memo.reading("A", 1.5, 128, TS) is first


def test_any_difference_gives_a_new_reading() -> None:
    memo = ReadingMemo()
    first = memo.reading("A", 1, 128, TS)
    for value, quality, ts in ((2, 128, TS), (1, 0x48, TS), (1, 128, LATER)):
        again = memo.reading("A", value, quality, ts)
        assert again is not first
        assert (again.value, again.quality, again.ts_ms) == (value, quality, parse_ts(ts))
        first = again


def test_equal_values_of_another_type_are_a_change() -> None:
    memo = ReadingMemo()
    memo.reading("A", 1, 128, TS)
    as_bool = memo.reading("A", True, 128, TS)
    assert type(as_bool.value) is bool
    assert type(memo.reading("A", 1.0, 128, TS).value) is float


def test_tags_are_remembered_apart_and_bad_timestamps_raise() -> None:
    memo = ReadingMemo()
    a = memo.reading("A", 1, 128, TS)
    b = memo.reading("B", 1, 128, TS)
    assert a is not b
    assert b.name == "B"
    with pytest.raises(ValueError, match="yesterday"):
        memo.reading("A", 1, 128, "yesterday")
