from gateway.core.backlog import BacklogChange, BacklogWatch


def feed(watch: BacklogWatch, points: list[tuple[float, int, bool]]) -> list[BacklogChange]:
    changes = []
    for now, depth, connected in points:
        change = watch.observe(now, depth, connected=connected)
        if change is not None:
            changes.append(change)
    return changes


def test_a_backlog_growing_for_a_whole_window_while_connected_is_falling_behind() -> None:
    watch = BacklogWatch(window=10, margin=100)
    growing = [(float(t), 500 * t, True) for t in range(10)]
    assert feed(watch, growing) == []  # not a whole window yet
    assert feed(watch, [(10.0, 5000, True)]) == [BacklogChange.FALLING_BEHIND]
    assert watch.behind
    assert watch.growth == 5000
    assert feed(watch, [(11.0, 5600, True), (12.0, 6000, True)]) == []  # said once


def test_a_backlog_of_a_broker_outage_draining_is_not_falling_behind() -> None:
    watch = BacklogWatch(window=10, margin=100)
    outage = [(float(t), 1000 * t, False) for t in range(60)]
    drain = [(60.0 + t, max(0, 60_000 - 5000 * t), True) for t in range(20)]
    assert feed(watch, outage + drain) == []
    assert not watch.behind


def test_growth_within_the_margin_is_noise() -> None:
    watch = BacklogWatch(window=10, margin=1000)
    wobble = [(float(t), 400 + (t % 3) * 300, True) for t in range(40)]
    assert feed(watch, wobble) == []


def test_a_shrinking_or_nearly_empty_backlog_has_caught_up() -> None:
    watch = BacklogWatch(window=10, margin=100)
    feed(watch, [(float(t), 1000 * t, True) for t in range(11)])
    assert watch.behind
    assert feed(watch, [(11.0, 10_500, True), (12.0, 10_900, True)]) == []
    # Broker gone meanwhile: nothing is said, and the state stays until it is back.
    assert feed(watch, [(13.0, 20_000, False)]) == []
    assert feed(watch, [(14.0, 80, True)]) == [BacklogChange.CAUGHT_UP]
    assert not watch.behind

    again = BacklogWatch(window=10, margin=100)
    feed(again, [(float(t), 1000 * t, True) for t in range(11)])
    shrinking = [(11.0 + t, 10_000 + 100 * t, True) for t in range(10)]
    shrinking += [(21.0, 10_400, True), (22.0, 9_000, True)]
    assert feed(again, shrinking) == [BacklogChange.CAUGHT_UP]
