"""The soak scenario's figures, from the gateway's RSS and CPU sampled over a long run.

Pure logic, no processes: the scenario takes the samples, this turns them into a verdict.
A leak shows as RSS that keeps climbing after the gateway has settled, so everything is
measured against the RSS at the end of a warm-up, when caches and the buffer's memory
have filled, not against the RSS at start.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

WARM_UP_SHARE = 0.2
"""The warm-up is this share of the soak run ..."""

WARM_UP_MAX_S = 120.0
"""... but never longer than this: a 30-minute soak settles after 2 minutes."""

RSS_BAND_PCT = 10.0
"""After the warm-up, RSS must stay within this many % of its warm-up value."""

SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True, slots=True)
class UsageSample:
    """The gateway's memory and CPU time at one instant of the soak run."""

    t_s: float  # seconds since the soak run started
    rss_bytes: int  # the gateway and its children
    cpu_s: float  # CPU time used so far (user + system, children included)


@dataclass(frozen=True, slots=True)
class SoakFigures:
    """What the samples after the warm-up say about memory and CPU."""

    warm_up_s: float  # the warm-up as configured
    warm_up_at_s: float  # time of the sample taken as the warm-up value
    warm_up_rss_mb: float
    end_rss_mb: float
    min_rss_mb: float  # after the warm-up
    max_rss_mb: float  # after the warm-up
    rss_change_pct: float  # end against the warm-up value
    rss_slope_mb_per_h: float | None  # None with fewer than two samples after the warm-up
    cpu_mean_pct: float | None  # after the warm-up, % of one core
    samples_after_warm_up: int
    samples_outside_band: int  # any above 0 is a FAIL

    @property
    def rss_within_band(self) -> bool:
        """Whether RSS stayed within ±RSS_BAND_PCT % of the warm-up value throughout."""
        return self.samples_outside_band == 0


def warm_up_seconds(run_s: float) -> float:
    """The first 20 % of the run, or 2 minutes, whichever is shorter."""
    return min(WARM_UP_SHARE * run_s, WARM_UP_MAX_S)


def least_squares_slope(points: Sequence[tuple[float, float]]) -> float | None:
    """Slope of the least-squares line through (x, y) points; None if x never varies.

    One outlier (a burst of garbage, a checkpoint) moves it little, unlike end minus start,
    and a steady climb shows even when it stays inside the ±10 % band.
    """
    if len(points) < 2:
        return None
    try:
        fit = statistics.linear_regression([x for x, _ in points], [y for _, y in points])
    except statistics.StatisticsError:  # every x the same
        return None
    return fit.slope


def rss_slope_mb_per_h(samples: Sequence[UsageSample]) -> float | None:
    """How fast RSS grows over the samples, in MB per hour, by least squares."""
    points = [(s.t_s / SECONDS_PER_HOUR, s.rss_bytes / 1e6) for s in samples]
    return least_squares_slope(points)


def soak_figures(
    samples: Sequence[UsageSample], warm_up_s: float, band_pct: float = RSS_BAND_PCT
) -> SoakFigures:
    """The figures of the samples taken at or after ``warm_up_s``.

    The first of them is the warm-up value. Raises ValueError when there is none, which
    the scenario prevents by always sampling at the run's end.
    """
    after = sorted((s for s in samples if s.t_s >= warm_up_s), key=lambda s: s.t_s)
    if not after:
        raise ValueError(f"no usage sample at or after the warm-up end ({warm_up_s:g} s)")
    first, last = after[0], after[-1]
    base = first.rss_bytes
    low, high = base * (1 - band_pct / 100), base * (1 + band_pct / 100)
    rss = [s.rss_bytes for s in after]
    elapsed = last.t_s - first.t_s
    return SoakFigures(
        warm_up_s=warm_up_s,
        warm_up_at_s=first.t_s,
        warm_up_rss_mb=base / 1e6,
        end_rss_mb=last.rss_bytes / 1e6,
        min_rss_mb=min(rss) / 1e6,
        max_rss_mb=max(rss) / 1e6,
        rss_change_pct=100.0 * (last.rss_bytes - base) / base if base else 0.0,
        rss_slope_mb_per_h=rss_slope_mb_per_h(after),
        cpu_mean_pct=100.0 * (last.cpu_s - first.cpu_s) / elapsed if elapsed > 0 else None,
        samples_after_warm_up=len(after),
        samples_outside_band=sum(1 for value in rss if not low <= value <= high),
    )
