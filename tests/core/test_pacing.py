"""The pacer keeps a connection under its per-second limits, and at them when it can."""

import itertools

import pytest

from gateway.core.pacing import Pacer, RateLimit


def run(limit: RateLimit, count: int, start: float = 100.0) -> list[float]:
    """Send ``count`` units as soon as the limit lets each go (a simulated clock)."""
    now, sent = start, []
    while len(sent) < count:
        wait = limit.wait(now)
        if wait > 0:
            now += wait
            continue
        limit.spend(now)
        sent.append(now)
    return sent


def most_in_any_second(times: list[float]) -> int:
    """Largest number of sends in any window of one second (the last send's window)."""
    best, first = 0, 0
    for last, at in enumerate(times):
        while times[first] <= at - 1.0:
            first += 1
        best = max(best, last - first + 1)
    return best


@pytest.mark.parametrize("rate", [100, 500, 7])
def test_never_over_the_limit_in_any_second_and_sustained_near_it(rate: int) -> None:
    times = run(RateLimit(rate), rate * 20)
    assert most_in_any_second(times) <= rate
    sustained = (len(times) - 1) / (times[-1] - times[0])
    assert rate * 0.97 <= sustained <= rate


def test_spread_evenly_not_sent_in_bursts() -> None:
    times = run(RateLimit(100), 1000)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # A twentieth of a second's worth goes at once, then one every 1/98 s (the first
    # second's window waits once for that burst to leave it).
    run_of_zeros = longest = 0
    for gap in gaps:
        run_of_zeros = run_of_zeros + 1 if gap == 0 else 0
        longest = max(longest, run_of_zeros)
    assert longest <= 4
    assert max(gaps[200:]) < 0.011


def test_room_counts_what_may_go_now() -> None:
    limit = RateLimit(100)
    assert limit.room(0.0) == 5  # the burst
    for _ in range(5):
        limit.spend(0.0)
    assert limit.room(0.0) == 0
    assert limit.wait(0.0) == pytest.approx(1 / 98)
    assert limit.room(1 / 98 + 1e-9) == 1


def test_a_message_larger_than_the_bucket_goes_alone_and_the_limit_holds_on_average() -> None:
    limit = RateLimit(1000)  # bytes a second
    assert limit.wait(0.0, 800) == 0.0
    limit.spend(0.0, 800)
    # 800 bytes went: the window has 200 left, the bucket is in debt.
    assert limit.wait(0.0, 300) > 0.5
    later = limit.wait(0.0, 300)
    assert limit.wait(later, 300) == 0.0


def test_pacer_waits_for_the_tighter_of_messages_and_bytes() -> None:
    pacer = Pacer(100, bytes_per_s=1000)
    assert pacer.wait(0.0, 900) == 0.0
    pacer.spend(0.0, 900)
    assert pacer.room(0.0) == 4  # by messages
    assert pacer.wait(0.0, 900) > 0.8  # by bytes: the window has 100 bytes left
    assert pacer.wait(0.0, 0) == 0.0


def test_a_limit_is_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        RateLimit(0)
