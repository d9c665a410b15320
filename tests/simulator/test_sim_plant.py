"""The plant model without any server: layout, changes, quality, history, alarms, writes."""

from __future__ import annotations

import itertools
import math

import pytest

from gateway.core.models import TagType
from gateway.simulator.plant import (
    GOOD,
    NOT_GOOD_CODES,
    Plant,
    ReadOnlyError,
    TypeMismatchError,
    UnknownAlarmError,
    UnknownTagError,
    alarm_capacity,
)

T0 = 1_790_000_000_000  # any fixed epoch ms keeps runs comparable

LEVEL = "System1.Area1.Tank1.Level"
SETPOINT = "System1.Area1.Tank1.Setpoint"
RUNNING = "System1.Area1.Pump1.Running"
STARTS = "System1.Area1.Pump1.Starts"
POSITION = "System1.Area1.Valve1.Position"
MODE = "System1.Area1.Valve1.Mode"


def run(plant: Plant, seconds: float, *, change_rate: float, bad_quality: float = 0.0) -> int:
    """Step the plant in 100 ms ticks from T0, as the simulator's ticker does."""
    made = 0
    for tick in range(1, round(seconds * 10) + 1):
        made += plant.step(T0 + tick * 100, change_rate=change_rate, bad_quality=bad_quality)
    return made


def quiet(plant: Plant) -> None:
    """Clear and acknowledge every alarm, so a test starts from none active."""
    for alarm_id in plant.alarms:
        plant.clear_alarm(alarm_id, now_ms=T0)
    for alarm in plant.active_alarms():
        plant.acknowledge(alarm.id, now_ms=T0)
    assert plant.active_alarms() == []


def test_exactly_n_tags_in_the_hierarchy() -> None:
    plant = Plant(1000, 20, now_ms=T0, seed=1)
    assert len(plant) == 1000
    assert len(set(plant.names)) == 1000
    assert plant.names[:3] == [LEVEL, SETPOINT, "System1.Area1.Tank1.Temperature"]
    assert all(name.startswith("System1.Area") and name.count(".") == 3 for name in plant.names)
    assert {plant.tag_type(name) for name in plant.names} == set(TagType) - {TagType.UNKNOWN}
    assert len(Plant(7, 0, now_ms=T0)) == 7


def test_large_plants_build() -> None:
    plant = Plant(100_000, 20, now_ms=T0, seed=1)
    assert len(plant) == 100_000
    assert plant.reading(plant.names[-1]).ts_ms == T0


def test_too_many_alarms_is_refused() -> None:
    assert alarm_capacity(3) == 3  # Level high and low, Temperature high
    with pytest.raises(ValueError, match="at most 3 alarms"):
        Plant(3, 4, now_ms=T0)


def test_same_seed_same_plant() -> None:
    first, second = Plant(500, 10, now_ms=T0, seed=42), Plant(500, 10, now_ms=T0, seed=42)
    run(first, 5, change_rate=0.3, bad_quality=0.2)
    run(second, 5, change_rate=0.3, bad_quality=0.2)
    assert [first.item(i) for i in range(500)] == [second.item(i) for i in range(500)]
    assert first.active_alarms() == second.active_alarms()
    other = Plant(500, 10, now_ms=T0, seed=43)
    run(other, 5, change_rate=0.3, bad_quality=0.2)
    assert [first.item(i) for i in range(500)] != [other.item(i) for i in range(500)]


@pytest.mark.parametrize("alarms", [0, 20])
def test_change_rate_is_honoured(alarms: int) -> None:
    plant = Plant(1000, alarms, now_ms=T0, seed=5)
    made = run(plant, 10, change_rate=0.1)
    assert made == plant.changes
    assert 900 <= made <= 1100  # 0.1 x 1000 tags x 10 s
    assert plant.changes_good == made


def test_a_step_makes_up_no_more_than_its_catch_up_bound() -> None:
    plant = Plant(1000, 0, now_ms=T0, seed=5)
    made = plant.step(T0 + 10_000, change_rate=1.0, catch_up_s=0.5)
    assert 400 <= made <= 600  # 0.5 s of 1,000 changes a second, not 10 s of them
    assert plant.skipped_s == pytest.approx(9.5)
    made = plant.step(T0 + 10_400, change_rate=1.0, catch_up_s=0.5)
    assert 300 <= made <= 500  # within the bound, the whole 0.4 s
    assert plant.skipped_s == pytest.approx(9.5)


def test_zero_change_rate_freezes_the_plant() -> None:
    plant = Plant(200, 5, now_ms=T0, seed=5)
    before = [plant.item(i) for i in range(200)]
    assert run(plant, 10, change_rate=0.0) == 0
    assert [plant.item(i) for i in range(200)] == before


def test_changes_get_new_source_timestamps() -> None:
    plant = Plant(100, 0, now_ms=T0, seed=5)
    run(plant, 5, change_rate=1.0)
    stamps = {plant.reading(name).ts_ms for name in plant.names}
    assert max(stamps) == T0 + 5000
    assert any(T0 < stamp < T0 + 5000 for stamp in stamps)


def test_bad_quality_share_and_codes() -> None:
    plant = Plant(1000, 0, now_ms=T0, seed=9)
    made = run(plant, 10, change_rate=0.2, bad_quality=0.3)
    bad_share = 1 - plant.changes_good / made
    assert 0.25 < bad_share < 0.35
    codes = {plant.reading(name).quality for name in plant.names}
    assert codes - {GOOD} <= set(NOT_GOOD_CODES)
    assert codes & {0x00, 0x04, 0x08, 0x0C, 0x18, 0x1C}
    assert codes & {0x40, 0x44, 0x50, 0x54}


def test_a_bad_code_keeps_the_old_value() -> None:
    plant = Plant(1000, 0, now_ms=T0, seed=9)
    run(plant, 10, change_rate=0.2, bad_quality=1.0)
    checked = 0
    for name in plant.names:
        page, _ = plant.history(name, start_ms=0, end_ms=T0 * 2, limit=1000)
        for before, after in itertools.pairwise(page):
            if after.quality < 0x40:  # bad: no new value came
                assert after.value == before.value
                checked += 1
    assert checked > 100


def test_history_ring_is_bounded() -> None:
    plant = Plant(10, 0, now_ms=T0, seed=1, history_depth=5)
    for step in range(12):
        plant.force(SETPOINT, float(step), now_ms=T0 + step)
    assert plant.history_length(SETPOINT) == 5
    page, cursor = plant.history(SETPOINT, start_ms=0, end_ms=T0 * 2, limit=100)
    assert [reading.value for reading in page] == [7.0, 8.0, 9.0, 10.0, 11.0]
    assert cursor is None
    assert plant.history_length(LEVEL) == 0  # rings are made on a tag's first change


def test_history_window_and_paging() -> None:
    plant = Plant(10, 0, now_ms=T0, seed=1)
    for step in range(20):
        plant.force(SETPOINT, float(step), now_ms=T0 + step * 1000)
    values: list[object] = []
    cursor: int | None = None
    pages = 0
    while True:
        page, cursor = plant.history(
            SETPOINT, start_ms=T0 + 5000, end_ms=T0 + 14_000, limit=4, cursor=cursor
        )
        values += [reading.value for reading in page]
        pages += 1
        if cursor is None:
            break
    assert values == [float(step) for step in range(5, 15)]
    assert pages == 3


def test_paging_resumes_at_the_oldest_kept_after_overwrites() -> None:
    plant = Plant(10, 0, now_ms=T0, seed=1, history_depth=4)
    for step in range(4):
        plant.force(SETPOINT, float(step), now_ms=T0 + step)
    page, cursor = plant.history(SETPOINT, start_ms=0, end_ms=T0 * 2, limit=2)
    assert [reading.value for reading in page] == [0.0, 1.0]
    for step in range(4, 8):  # overwrites everything the cursor pointed at
        plant.force(SETPOINT, float(step), now_ms=T0 + step)
    page, cursor = plant.history(SETPOINT, start_ms=0, end_ms=T0 * 2, limit=2, cursor=cursor)
    assert [reading.value for reading in page] == [4.0, 5.0]
    assert cursor is not None


def test_history_keeps_types() -> None:
    plant = Plant(20, 0, now_ms=T0, seed=1)
    plant.force(RUNNING, True, now_ms=T0)
    plant.force(STARTS, 7, now_ms=T0)
    plant.force(MODE, "manual", now_ms=T0)
    for name, value in ((RUNNING, True), (STARTS, 7), (MODE, "manual")):
        page, _ = plant.history(name, start_ms=0, end_ms=T0, limit=10)
        assert page[-1].value == value
        assert type(page[-1].value) is type(value)


def test_alarms_come_and_go_within_a_minute() -> None:
    plant = Plant(1000, 20, now_ms=T0, seed=11)
    quiet(plant)
    events: set[tuple[str, str, int | None]] = set()
    for tick in range(1, 601):
        plant.step(T0 + tick * 100, change_rate=0.1)
        for alarm in plant.active_alarms():
            events.add((alarm.id, "came", alarm.came_at))
            if alarm.went_at is not None:
                events.add((alarm.id, "went", alarm.went_at))
    came = sum(1 for _, kind, _ in events if kind == "came")
    went = len(events) - came
    assert came >= 10
    assert went >= 10
    assert plant.alarm_transitions >= came + went


def test_alarm_lifecycle_acked_before_going() -> None:
    plant = Plant(100, 4, now_ms=T0, seed=1)
    quiet(plant)
    plant.raise_alarm("1001", now_ms=T0 + 1)
    (alarm,) = plant.active_alarms()
    assert (alarm.id, alarm.tag, alarm.state, alarm.acked) == ("1001", LEVEL, "came", False)
    assert alarm.text == "System1.Area1.Tank1: High level"
    assert alarm.came_at == T0 + 1
    assert alarm.went_at is None
    acked = plant.acknowledge("1001", now_ms=T0 + 2)
    assert (acked.acked, acked.acked_at, acked.state) == (True, T0 + 2, "came")
    plant.clear_alarm("1001", now_ms=T0 + 3)
    assert plant.active_alarms() == []  # acked and gone: not listed any more


def test_alarm_lifecycle_gone_before_acked() -> None:
    plant = Plant(100, 4, now_ms=T0, seed=1)
    quiet(plant)
    plant.raise_alarm("1002", now_ms=T0 + 1)  # low level
    plant.clear_alarm("1002", now_ms=T0 + 2)
    (alarm,) = plant.active_alarms()
    assert (alarm.state, alarm.acked, alarm.went_at) == ("went", False, T0 + 2)
    plant.acknowledge("1002", now_ms=T0 + 3)
    assert plant.active_alarms() == []
    with pytest.raises(UnknownAlarmError):
        plant.acknowledge("1002", now_ms=T0 + 4)  # no longer active
    with pytest.raises(UnknownAlarmError):
        plant.acknowledge("9999", now_ms=T0 + 4)


def test_alarm_follows_values_with_hysteresis() -> None:
    plant = Plant(100, 1, now_ms=T0, seed=1)
    quiet(plant)
    plant.force(LEVEL, 95.0, now_ms=T0 + 1)
    assert plant.active_alarms()[0].state == "came"
    plant.force(LEVEL, 89.0, now_ms=T0 + 2)  # within the hysteresis: still there
    assert plant.active_alarms()[0].state == "came"
    plant.force(LEVEL, 50.0, now_ms=T0 + 3)
    assert plant.active_alarms()[0].state == "went"
    plant.force(LEVEL, 99.0, now_ms=T0 + 4)  # comes again before anyone acked
    again = plant.active_alarms()[0]
    assert (again.state, again.came_at, again.went_at) == ("came", T0 + 4, None)


def test_write_success_is_recorded() -> None:
    plant = Plant(100, 0, now_ms=T0, seed=1)
    reading = plant.write(SETPOINT, 42, now_ms=T0 + 5)
    assert (reading.value, reading.quality, reading.ts_ms) == (42.0, GOOD, T0 + 5)
    assert type(reading.value) is float
    assert plant.reading(SETPOINT) == reading
    assert plant.history(SETPOINT, start_ms=T0, end_ms=T0 + 5, limit=10)[0] == [reading]
    assert plant.changes == 1


@pytest.mark.parametrize(
    ("name", "value", "stored"),
    [
        (SETPOINT, 1.5, 1.5),
        (SETPOINT, 3, 3.0),
        (RUNNING, False, False),
        (POSITION, 40, 40),
        (POSITION, 40.0, 40),
        (MODE, "manual", "manual"),
    ],
)
def test_write_accepts_fitting_types(name: str, value: object, stored: object) -> None:
    plant = Plant(100, 0, now_ms=T0, seed=1)
    reading = plant.write(name, value, now_ms=T0)
    assert reading.value == stored
    assert type(reading.value) is type(stored)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        (SETPOINT, True),
        (SETPOINT, "1.5"),
        (SETPOINT, math.nan),
        (SETPOINT, math.inf),
        (SETPOINT, None),
        (SETPOINT, 10**400),
        (RUNNING, 1),
        (RUNNING, "true"),
        (POSITION, 40.5),
        (POSITION, True),
        (POSITION, "40"),
        (POSITION, 2**40),
        (MODE, 1),
        (MODE, "x" * 256),
    ],
)
def test_write_refuses_mismatched_types(name: str, value: object) -> None:
    plant = Plant(100, 0, now_ms=T0, seed=1)
    before = plant.reading(name)
    with pytest.raises(TypeMismatchError):
        plant.write(name, value, now_ms=T0 + 1)
    assert plant.reading(name) == before
    assert plant.changes == 0


def test_write_refuses_read_only_and_unknown_tags() -> None:
    plant = Plant(100, 0, now_ms=T0, seed=1)
    with pytest.raises(ReadOnlyError):
        plant.write(LEVEL, 50.0, now_ms=T0)
    with pytest.raises(UnknownTagError):
        plant.write("System1.Nope", 1, now_ms=T0)


def test_browse() -> None:
    plant = Plant(200, 0, now_ms=T0, seed=1)
    (root,) = plant.browse("")
    assert (root.name, root.type, root.has_children) == ("System1", None, True)
    assert plant.browse("System1") == plant.browse("System1.")
    assert [area.name for area in plant.browse("System1.")] == ["System1.Area1", "System1.Area2"]
    tank = {child.name: child for child in plant.browse("System1.Area1.Tank1")}
    assert tank[SETPOINT].writable
    assert tank[SETPOINT].type is TagType.FLOAT
    assert not tank[LEVEL].writable
    assert not tank[LEVEL].has_children
    with pytest.raises(UnknownTagError):
        plant.browse("System1.Area9")
    with pytest.raises(UnknownTagError):
        plant.browse(LEVEL)  # a tag is not a folder


def test_listeners_hear_every_change_and_alarm_transition() -> None:
    plant = Plant(100, 4, now_ms=T0, seed=1)
    quiet(plant)
    changes: list[tuple[int, object, int, int]] = []
    alarms: list[tuple[str, bool, bool]] = []
    plant.on_change = lambda i, value, quality, ts: changes.append((i, value, quality, ts))
    plant.on_alarm = lambda alarm: alarms.append((alarm.id, alarm.active, alarm.acked))
    plant.write(SETPOINT, 12.0, now_ms=T0 + 1)
    plant.force(SETPOINT, 13.0, now_ms=T0 + 2, quality=0x54)
    made = run(plant, 2, change_rate=1.0)
    assert changes[:2] == [
        (plant.index[SETPOINT], 12.0, GOOD, T0 + 1),
        (plant.index[SETPOINT], 13.0, 0x54, T0 + 2),
    ]
    assert len(changes) == 2 + made
    quiet(plant)
    alarms.clear()
    plant.raise_alarm("1001", now_ms=T0 + 10)  # came
    plant.acknowledge("1001", now_ms=T0 + 11)  # acknowledged
    plant.clear_alarm("1001", now_ms=T0 + 12)  # went, and leaves the list
    assert alarms == [("1001", True, False), ("1001", True, True), ("1001", False, True)]
