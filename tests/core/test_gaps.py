"""The window of a gap in the polls, on WinCC's clock."""

from __future__ import annotations

from gateway.core.gaps import GapWindow, gap_window

HOUR = 3_600_000
HOST = 1_800_000_000_000  # the host's clock at the last good poll


def test_the_window_is_on_wincc_clock_whatever_the_host_clock_says() -> None:
    wincc = HOST + HOUR  # WinCC runs an hour ahead
    window = gap_window(
        read_to_ms=wincc,
        read_at_ms=HOST,
        end_ms=wincc + 5_000,
        now_ms=HOST + 5_000,
        slack_ms=1_000,
        max_gap_ms=HOUR,
    )
    assert window == GapWindow(wincc, wincc, wincc + 5_000)


def test_a_quiet_plant_bounds_the_window_by_the_time_that_passed() -> None:
    # the newest timestamp before the gap is a day old; the outage lasted 10 s
    window = gap_window(
        read_to_ms=HOST - 24 * HOUR,
        read_at_ms=HOST,
        end_ms=HOST + 10_000,
        now_ms=HOST + 10_000,
        slack_ms=1_000,
        max_gap_ms=HOUR,
    )
    assert window == GapWindow(HOST - 1_000, HOST - 1_000, HOST + 10_000)


def test_a_gap_longer_than_max_gap_fills_only_its_newest_part() -> None:
    window = gap_window(
        read_to_ms=HOST,
        read_at_ms=HOST,
        end_ms=HOST + 3 * HOUR,
        now_ms=HOST + 3 * HOUR,
        slack_ms=0,
        max_gap_ms=HOUR,
    )
    assert window == GapWindow(HOST, HOST + 2 * HOUR, HOST + 3 * HOUR)


def test_nothing_changed_since_the_last_good_poll_is_no_gap() -> None:
    window = gap_window(
        read_to_ms=HOST,
        read_at_ms=HOST,
        end_ms=HOST,
        now_ms=HOST + 60_000,
        slack_ms=1_000,
        max_gap_ms=HOUR,
    )
    assert window is None
