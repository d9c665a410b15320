"""The soak scenario's verdict from RSS and CPU samples: warm-up, band, least-squares slope."""

from __future__ import annotations

import pytest

from bench.soak import (
    UsageSample,
    least_squares_slope,
    rss_slope_mb_per_h,
    soak_figures,
    warm_up_seconds,
)

MB = 1_000_000


def _samples(rss_mb: list[float], every: float = 10.0, cpu_per_s: float = 0.5) -> list[UsageSample]:
    return [
        UsageSample(t_s=i * every, rss_bytes=round(mb * MB), cpu_s=i * every * cpu_per_s)
        for i, mb in enumerate(rss_mb)
    ]


def test_slope_of_points_on_a_line_is_the_line_s_slope() -> None:
    points = [(x, 5.0 + 2.0 * x) for x in (0.0, 1.0, 2.5, 7.0)]
    assert least_squares_slope(points) == pytest.approx(2.0)


def test_slope_is_the_least_squares_fit_not_end_minus_start() -> None:
    # one high sample at an end moves the fit less than it moves end minus start (1.0)
    assert least_squares_slope([(0, 0), (1, 0), (2, 0), (3, 3)]) == pytest.approx(0.9)
    assert least_squares_slope([(0, 3), (1, 0), (2, 0), (3, 0)]) == pytest.approx(-0.9)
    assert least_squares_slope([(0, 0), (1, 3), (2, 0)]) == pytest.approx(0.0)


def test_slope_needs_two_distinct_times() -> None:
    assert least_squares_slope([]) is None
    assert least_squares_slope([(1.0, 5.0)]) is None
    assert least_squares_slope([(1.0, 5.0), (1.0, 7.0)]) is None


def test_rss_slope_is_in_mb_per_hour() -> None:
    # one sample every 10 s for an hour, RSS growing 1 MB every 6 minutes: 10 MB/h
    samples = _samples([100 + i * 10 / 360 for i in range(361)])
    assert rss_slope_mb_per_h(samples) == pytest.approx(10.0)
    assert rss_slope_mb_per_h(_samples([80.0] * 10)) == pytest.approx(0.0)


def test_warm_up_is_a_fifth_of_the_run_but_at_most_two_minutes() -> None:
    assert warm_up_seconds(30 * 60) == 120.0
    assert warm_up_seconds(3 * 60) == pytest.approx(36.0)
    assert warm_up_seconds(6.0) == pytest.approx(1.2)


def test_figures_are_measured_against_the_first_sample_after_the_warm_up() -> None:
    # start-up RSS is low, then the buffer's cache fills; after 20 s it stays near 100 MB
    samples = _samples([40, 70, 100, 104, 97, 102, 105])
    figures = soak_figures(samples, warm_up_s=15.0)
    assert figures.warm_up_at_s == 20.0
    assert figures.warm_up_rss_mb == pytest.approx(100.0)
    assert figures.end_rss_mb == pytest.approx(105.0)
    assert figures.min_rss_mb == pytest.approx(97.0)  # the start-up values do not count
    assert figures.max_rss_mb == pytest.approx(105.0)
    assert figures.rss_change_pct == pytest.approx(5.0)
    assert figures.samples_after_warm_up == 5
    assert figures.cpu_mean_pct == pytest.approx(50.0)
    assert figures.rss_slope_mb_per_h is not None
    assert figures.rss_slope_mb_per_h > 0
    assert figures.samples_outside_band == 0
    assert figures.rss_within_band


@pytest.mark.parametrize(
    ("later_mb", "outside"),
    [([109.9, 90.1], 0), ([110.5], 1), ([89.5], 1), ([95.0, 111.0, 120.0, 100.0], 2)],
)
def test_rss_leaving_ten_percent_of_the_warm_up_value_fails(
    later_mb: list[float], outside: int
) -> None:
    figures = soak_figures(_samples([60.0, 100.0, *later_mb]), warm_up_s=10.0)
    assert figures.warm_up_rss_mb == pytest.approx(100.0)
    assert figures.samples_outside_band == outside
    assert figures.rss_within_band is (outside == 0)


def test_one_sample_after_the_warm_up_gives_no_slope_and_no_cpu() -> None:
    figures = soak_figures(_samples([50.0, 60.0]), warm_up_s=5.0)
    assert figures.warm_up_rss_mb == figures.end_rss_mb == pytest.approx(60.0)
    assert figures.rss_slope_mb_per_h is None
    assert figures.cpu_mean_pct is None
    assert figures.rss_within_band


def test_no_sample_after_the_warm_up_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="warm-up end"):
        soak_figures(_samples([50.0, 60.0]), warm_up_s=11.0)
