from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from gateway.core.alarms import AlarmTracker, AlarmTransition
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


# --- single changes, as a source that pushes them reports them -----------------------


def test_a_single_change_of_a_new_alarm_comes() -> None:
    tracker = AlarmTracker()
    diff = tracker.change(alarm(), now_ms=5)
    assert events(diff) == ["came"]
    assert diff.events[0].at_ms == 1000  # its own came time, not the time it was seen
    assert diff.changed == [alarm()]
    assert diff.cleared == []
    assert tracker.active == {"1001": alarm()}


def test_a_single_change_to_went_goes() -> None:
    tracker = AlarmTracker()
    tracker.change(alarm(), 1)
    diff = tracker.change(alarm("went"), 2)
    assert events(diff) == ["went"]
    assert diff.events[0].at_ms == 2000
    assert diff.changed == [alarm("went")]
    assert diff.cleared == []


def test_a_single_acknowledgement_is_acked() -> None:
    tracker = AlarmTracker()
    tracker.change(alarm(), 1)
    diff = tracker.change(alarm(acked=True), 2)
    assert events(diff) == ["acked"]
    assert diff.changed == [alarm(acked=True)]


def test_a_single_change_that_changes_nothing_yields_nothing() -> None:
    tracker = AlarmTracker()
    tracker.change(alarm(), 1)
    diff = tracker.change(alarm(), 2)
    assert (diff.changed, diff.cleared, diff.events) == ([], [], [])


def test_removing_an_alarm_that_had_not_gone_clears_it_with_a_went_event() -> None:
    tracker = AlarmTracker()
    tracker.change(alarm(acked=True), 1)
    diff = tracker.remove("1001", now_ms=99)
    assert diff.cleared == ["1001"]
    assert diff.changed == []
    assert events(diff) == ["went"]
    assert diff.events[0].at_ms == 99
    assert diff.events[0].alarm.went_at == 99
    assert tracker.active == {}


def test_removing_an_alarm_that_went_only_clears_it() -> None:
    tracker = AlarmTracker()
    tracker.change(alarm("went", acked=True), 1)
    diff = tracker.remove("1001", now_ms=99)
    assert diff.cleared == ["1001"]
    assert events(diff) == []


def test_removing_an_unknown_alarm_yields_nothing() -> None:
    tracker = AlarmTracker()
    tracker.change(alarm(), 1)
    diff = tracker.remove("never-seen", now_ms=2)
    assert (diff.changed, diff.cleared, diff.events) == ([], [], [])
    assert set(tracker.active) == {"1001"}


def test_single_changes_pick_up_from_a_restored_state() -> None:
    tracker = AlarmTracker()
    tracker.restore({"1001": alarm()})
    assert events(tracker.change(alarm(), 1)) == []
    assert events(tracker.remove("1001", 2)) == ["went"]


def test_an_update_leaves_the_dict_it_replaced_as_it_was() -> None:
    """The alarm poller keeps the dict from before an update to restore it when the disk
    refuses the update's messages."""
    tracker = AlarmTracker()
    tracker.update([alarm()], 1)
    before = tracker.active
    tracker.update([alarm(alarm_id="2")], 2)
    assert before == {"1001": alarm()}


# --- both ways of reporting yield the same ----------------------------------------------

_times = st.none() | st.integers(1, 5)
_alarm_states = st.tuples(st.sampled_from(["came", "went"]), st.booleans(), _times, _times, _times)
_lists = st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), _alarm_states).map(
    lambda states: [
        Alarm(alarm_id, "System1.T", "text", 1, state, acked, came, went, ack)
        for alarm_id, (state, acked, came, went, ack) in states.items()
    ]
)


def _per_alarm(transitions: list[AlarmTransition]) -> dict[str, list[AlarmTransition]]:
    by_id: dict[str, list[AlarmTransition]] = {}
    for transition in transitions:
        by_id.setdefault(transition.alarm.id, []).append(transition)
    return by_id


@given(st.lists(_lists, max_size=8))
def test_full_lists_and_single_changes_yield_the_same(lists: list[list[Alarm]]) -> None:
    """For each new list, ``update`` with the whole list and ``change``/``remove`` with
    only what differs from the last list yield the same states, clears and events (in the
    same order for each alarm), and leave the same alarms active."""
    full, single = AlarmTracker(), AlarmTracker()
    before: dict[str, Alarm] = {}
    for now_ms, alarms in enumerate(lists, start=100):
        listed = full.update(alarms, now_ms)
        changes = [single.change(a, now_ms) for a in alarms if before.get(a.id) != a]
        current = {a.id: a for a in alarms}
        removals = [single.remove(i, now_ms) for i in before if i not in current]
        pushed = changes + removals
        assert Counter(listed.changed) == Counter(a for d in pushed for a in d.changed)
        assert Counter(listed.cleared) == Counter(i for d in pushed for i in d.cleared)
        assert _per_alarm(listed.events) == _per_alarm([t for d in pushed for t in d.events])
        assert single.active == full.active
        before = current
