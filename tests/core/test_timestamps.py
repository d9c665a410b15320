from datetime import UTC, datetime

from gateway.core.timestamps import format_ts, parse_ts


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
