from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.core.timestamps import (
    MAX_MS,
    MIN_MS,
    PARSED_KEPT,
    format_ts,
    parse_optional_ts,
    parse_ts,
)


def test_format_gives_milliseconds_and_z() -> None:
    assert format_ts(0) == "1970-01-01T00:00:00.000Z"
    assert format_ts(1_795_510_800_123) == "2026-11-24T09:00:00.123Z"
    assert format_ts(1_795_510_800_999) == "2026-11-24T09:00:00.999Z"
    assert format_ts(1_795_510_801_000) == "2026-11-24T09:00:01.000Z"


def test_format_stays_right_beyond_the_seconds_it_keeps() -> None:
    """Every millisecond of 10,000 different seconds, against datetime itself."""
    start = 1_795_510_800_000
    for ms in range(start, start + 10_000_000, 997):
        expected = datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
        assert format_ts(ms) == expected.replace("+00:00", "Z")


def test_parse_reads_offsets_and_naive_times_as_utc() -> None:
    assert parse_ts("2026-11-24T10:00:00.123+01:00") == 1_795_510_800_123
    assert parse_ts("2026-11-24T09:00:00.123") == 1_795_510_800_123
    assert parse_ts(format_ts(1_795_510_800_123)) == 1_795_510_800_123


def test_format_writes_four_digit_years_at_both_ends_of_the_range() -> None:
    """The .NET minimum date and the last millisecond of 9999 are valid ISO 8601."""
    first, last = parse_ts("0001-01-01T00:00:00Z"), parse_ts("9999-12-31T23:59:59.999Z")
    assert format_ts(first) == "0001-01-01T00:00:00.000Z"
    assert format_ts(last) == "9999-12-31T23:59:59.999Z"
    assert format_ts(parse_ts("0999-05-06T07:08:09.010Z")) == "0999-05-06T07:08:09.010Z"
    for ms in (first, last, parse_ts("0999-05-06T07:08:09.010Z")):
        assert datetime.fromisoformat(format_ts(ms)).tzinfo is not None


def test_parse_refuses_times_outside_what_the_format_carries() -> None:
    """Past 9999 or before year 1 once the offset is applied: a ValueError, never a value
    that cannot be formatted."""
    for text in ("9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+01:00"):
        with pytest.raises(ValueError, match="outside"):
            parse_ts(text)


def test_format_refuses_what_it_cannot_write() -> None:
    first, last = parse_ts("0001-01-01T00:00:00Z"), parse_ts("9999-12-31T23:59:59.999Z")
    for ms in (first - 1, last + 1, 10**20, -(10**20)):
        with pytest.raises(ValueError, match="outside"):
            format_ts(ms)


def test_never_reads_the_dotnet_minimum_date_as_no_time() -> None:
    assert parse_optional_ts(None) is None
    for text in ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00", "0001-01-01T00:00:00.0000000"):
        assert parse_optional_ts(text) is None
    assert parse_optional_ts("2026-11-24T09:00:00.123Z") == 1_795_510_800_123


@given(st.integers(MIN_MS, MAX_MS))
def test_the_usual_form_parses_back_to_its_millisecond(ms: int) -> None:
    assert parse_ts(format_ts(ms)) == ms


def test_parsed_timestamps_are_kept_within_bounds() -> None:
    """Parsed texts are remembered for the next reading that carries them, and the
    memory of them starts over rather than grow with every distinct timestamp."""
    first = "2026-12-02T17:00:00.000Z"
    assert parse_ts(first) == parse_ts(first) == 1_796_230_800_000
    for ms in range(1_796_230_800_000, 1_796_230_800_000 + PARSED_KEPT + 10):
        assert parse_ts(format_ts(ms)) == ms
    assert parse_ts.cache_info().currsize <= PARSED_KEPT
    with pytest.raises(ValueError, match="years 1 to 9999"):
        parse_ts("9999-12-31T23:59:59-14:00")
    with pytest.raises(TypeError):
        parse_ts(["2026-12-02T17:00:00.000Z"])  # type: ignore[arg-type]
