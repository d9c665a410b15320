import math

from gateway.core.models import Reading
from gateway.core.samples import SampleDecider, value_changed


def r(value: object, quality: int = 128, name: str = "T", ts: int = 0) -> Reading:
    return Reading(name, value, quality, ts)  # type: ignore[arg-type]


def test_first_reading_of_every_tag_is_published_with_seq_1() -> None:
    decider = SampleDecider([128], drop_bad=False)
    out = decider.decide([r(1.0, name="A"), r(2.0, name="B")], deadband=10)
    assert [(s.name, seq) for s, seq in out] == [("A", 1), ("B", 1)]


def test_unchanged_values_are_not_published_and_seq_rises_by_one() -> None:
    decider = SampleDecider([128], drop_bad=False)
    seqs = []
    for value in (1, 1, 2, 2, 3):
        seqs += [seq for _, seq in decider.decide([r(value)], deadband=0)]
    assert seqs == [1, 2, 3]


def test_deadband_compares_with_the_last_published_value() -> None:
    decider = SampleDecider([128], drop_bad=False)
    published = []
    for value in (10.0, 10.25, 10.5, 10.75, 10.5):
        published += [s.value for s, _ in decider.decide([r(value)], deadband=0.5)]
    # 10.25 and 10.5 are within 0.5 of 10.0; 10.75 is not; then 10.5 is within 0.5 of 10.75.
    assert published == [10.0, 10.75]


def test_deadband_is_strict_greater_than() -> None:
    assert not value_changed(10.0, 10.5, 0.5)
    assert value_changed(10.0, 10.51, 0.5)


def test_booleans_and_strings_publish_on_any_change_despite_deadband() -> None:
    assert value_changed(True, False, 5)
    assert value_changed("auto", "manual", 5)
    assert not value_changed("auto", "auto", 0)
    assert value_changed(1, True, 5)  # a type change is a change


def test_nan_is_a_change_once() -> None:
    assert value_changed(1.0, math.nan, 0)
    assert not value_changed(math.nan, math.nan, 0)
    assert value_changed(math.nan, 1.0, 100)


def test_quality_change_publishes_even_inside_the_deadband() -> None:
    decider = SampleDecider([128], drop_bad=False)
    decider.decide([r(5.0)], deadband=1)
    out = decider.decide([r(5.0, quality=0x08)], deadband=1)
    assert [(s.quality, seq) for s, seq in out] == [(0x08, 2)]


def test_drop_policy_never_publishes_bad_and_republishes_on_recovery() -> None:
    decider = SampleDecider([128], drop_bad=True)
    assert len(decider.decide([r(5.0)], 0)) == 1
    assert decider.decide([r(5.0, quality=0x08)], 0) == []
    assert decider.decide([r(6.0, quality=0x08)], 0) == []
    out = decider.decide([r(5.0)], 0)
    assert [(s.value, seq) for s, seq in out] == [(5.0, 2)]


def test_drop_policy_first_reading_bad_publishes_nothing_until_good() -> None:
    decider = SampleDecider([128], drop_bad=True)
    assert decider.decide([r(1, quality=0x44)], 0) == []
    assert [seq for _, seq in decider.decide([r(1)], 0)] == [1]


def test_good_codes_are_configurable() -> None:
    decider = SampleDecider([128, 192], drop_bad=True)
    assert 192 in decider.good_codes
    assert [seq for _, seq in decider.decide([r(1, quality=192)], 0)] == [1]


def test_the_same_reading_object_is_skipped_but_an_equal_new_one_is_decided() -> None:
    """The client hands out the same object while a tag is unchanged; a repeated bad
    reading is then withheld once, while an equal but new reading is decided again."""
    decider = SampleDecider([128], drop_bad=True)
    bad = r(5.0, quality=0x48)
    assert decider.decide([bad], 0) == []
    assert decider.decide([bad, bad], 0) == []
    assert decider.withheld == 1
    assert decider.decide([r(5.0, quality=0x48)], 0) == []
    assert decider.withheld == 2


def test_the_same_reading_under_a_new_deadband_is_decided_again() -> None:
    decider = SampleDecider([128], drop_bad=False)
    decider.decide([r(10.0)], 0)
    moved = r(10.3)
    assert decider.decide([moved], deadband=0.5) == []
    assert [s.value for s, _ in decider.decide([moved], deadband=0.1)] == [10.3]


def test_only_readings_younger_than_the_last_decided_one_are_newer() -> None:
    decider = SampleDecider([128], drop_bad=False)
    assert decider.newer_than_seen(r(1, ts=100))
    decider.decide([r(1, ts=100)], 0)
    assert not decider.newer_than_seen(r(2, ts=100))
    assert not decider.newer_than_seen(r(2, ts=50))
    assert decider.newer_than_seen(r(2, ts=101))
    assert decider.newer_than_seen(r(2, name="other", ts=1))


def states(decided: list[tuple[Reading, int]]) -> list[tuple[str, int, object, int, int]]:
    """What the buffer commits for ``decided``: tag, seq, value, quality, ts."""
    return [
        (reading.name, seq, reading.value, reading.quality, reading.ts_ms)
        for reading, seq in decided
    ]


def test_a_sample_whose_commit_failed_is_decided_again_with_the_same_seq() -> None:
    """A full disk lost the sample: the tag has not been published, so the very reading
    WinCC keeps handing out is published once the disk takes it."""
    decider = SampleDecider([128], drop_bad=False)
    decider.stored(states(decider.decide([r(1.0)], 0)))
    changed = r(2.0)
    lost = decider.decide([changed], 0)
    assert [seq for _, seq in lost] == [2]
    decider.lost(states(lost))
    again = decider.decide([changed], 0)
    assert [(s.value, seq) for s, seq in again] == [(2.0, 2)]
    decider.stored(states(again))
    assert decider.decide([changed], 0) == []
    assert decider.decide([r(2.0)], 0) == []


def test_a_lost_first_sample_of_a_tag_is_published_again_as_its_first() -> None:
    decider = SampleDecider([128], drop_bad=False)
    reading = r(7)
    decider.lost(states(decider.decide([reading], 0)))
    assert [seq for _, seq in decider.decide([reading], 0)] == [1]


def test_samples_in_flight_rewind_to_the_last_one_stored() -> None:
    """Two commits under way for one tag: the first stored, the second lost; the next
    decision follows the stored one, so no seq is skipped or given to two values."""
    decider = SampleDecider([128], drop_bad=False)
    first = decider.decide([r(1.0)], 0)
    second = decider.decide([r(2.0)], 0)
    decider.stored(states(first))
    decider.lost(states(second))
    assert decider.decide([r(1.0)], 0) == []
    assert [(s.value, seq) for s, seq in decider.decide([r(3.0)], 0)] == [(3.0, 2)]


def test_samples_in_flight_all_lost_rewind_to_what_was_stored_before() -> None:
    decider = SampleDecider([128], drop_bad=False)
    decider.restore({"T": 4}, {"T": (1.0, 128)})
    first = decider.decide([r(2.0)], 0)
    second = decider.decide([r(3.0)], 0)
    decider.lost(states(first))
    decider.lost(states(second))
    assert decider.decide([r(1.0)], 0) == []
    assert [(s.value, seq) for s, seq in decider.decide([r(3.0)], 0)] == [(3.0, 5)]
