from gateway.core.alarms import AlarmTracker
from gateway.core.models import Alarm


def alarm(state: str = "came", acked: bool = False, alarm_id: str = "1001") -> Alarm:
    return Alarm(
        id=alarm_id,
        tag="System1.Area1.Tank1.Level",
        text="High level",
        priority=3,
        state=state,
        acked=acked,
        came_at=1000,
        went_at=2000 if state == "went" else None,
        acked_at=3000 if acked else None,
    )


def events(diff: object) -> list[str]:
    return [t.event for t in diff.events]  # type: ignore[attr-defined]


def test_new_alarm_comes() -> None:
    tracker = AlarmTracker()
    diff = tracker.update([alarm()], now_ms=5)
    assert events(diff) == ["came"]
    assert [a.id for a in diff.changed] == ["1001"]
    assert diff.cleared == []


def test_unchanged_alarm_yields_nothing() -> None:
    tracker = AlarmTracker()
    tracker.update([alarm()], now_ms=5)
    diff = tracker.update([alarm()], now_ms=6)
    assert (diff.changed, diff.cleared, diff.events) == ([], [], [])


def test_went_then_acked_then_gone() -> None:
    tracker = AlarmTracker()
    tracker.update([alarm()], 1)
    assert events(tracker.update([alarm("went")], 2)) == ["went"]
    assert events(tracker.update([alarm("went", acked=True)], 3)) == ["acked"]
    diff = tracker.update([], 4)
    assert diff.cleared == ["1001"]
    assert events(diff) == []


def test_alarm_vanishing_before_it_went_yields_went() -> None:
    tracker = AlarmTracker()
    tracker.update([alarm(acked=True)], 1)
    diff = tracker.update([], 99)
    assert diff.cleared == ["1001"]
    assert events(diff) == ["went"]
    assert diff.events[0].at_ms == 99


def test_alarm_first_seen_went_and_acked_reports_each_transition() -> None:
    tracker = AlarmTracker()
    assert events(tracker.update([alarm("went", acked=True)], 1)) == ["came", "went", "acked"]


def test_alarm_coming_again_with_the_same_id() -> None:
    tracker = AlarmTracker()
    tracker.update([alarm("went")], 1)
    assert events(tracker.update([alarm("came")], 2)) == ["came"]


def test_alarm_payload_round_trips() -> None:
    from gateway.core.payloads import alarm_from_payload, alarm_payload  # noqa: PLC0415

    for original in (alarm(), alarm("went", acked=True)):
        assert alarm_from_payload(alarm_payload(original)) == original


def test_restored_tracker_clears_what_went_meanwhile_and_repeats_no_event() -> None:
    tracker = AlarmTracker()
    tracker.restore({"1001": alarm(), "1002": alarm(alarm_id="1002")})
    diff = tracker.update([alarm(alarm_id="1002")], now_ms=7)
    assert diff.cleared == ["1001"]
    assert diff.changed == []
    assert events(diff) == ["went"]


def test_an_alarm_listed_but_unreadable_keeps_its_last_state() -> None:
    """A listed alarm that cannot be read has not gone: no clear, no event, until it is
    read again or really leaves the list."""
    tracker = AlarmTracker()
    tracker.update([alarm(), alarm(alarm_id="2")], 1)
    diff = tracker.update([alarm(alarm_id="2")], 2, unreadable={"1001", "never-seen"})
    assert (diff.changed, diff.cleared, diff.events) == ([], [], [])
    assert set(tracker.active) == {"1001", "2"}
    diff = tracker.update([alarm(alarm_id="2")], 3)
    assert diff.cleared == ["1001"]
