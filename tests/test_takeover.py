"""A standby taking over continues every tag's seq from the broker's retained messages and
fills the gap from each group's oldest retained timestamp."""

import pytest

from gateway.buffer.store import PollMark
from gateway.core.models import Reading
from gateway.core.samples import SampleDecider
from gateway.takeover import RetainedSample, Takeover, parse_retained

LEVEL = "System1.Area1.Tank1.Level"
SPEED = "System1.Area1.Pump1.Speed"


def test_a_retained_tag_message_gives_its_seq_value_and_time() -> None:
    payload = b'{"value":1.5,"quality":128,"good":true,"ts":"2026-12-02T08:00:00.000Z","seq":41}'
    assert parse_retained(payload) == RetainedSample(41, 1.5, 128, 1796198400000)


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"not json",
        b'{"value":1}',
        b'{"value":1,"quality":128,"ts":"2026-12-02T08:00:00Z","seq":"41"}',
        b'{"value":1,"quality":128,"ts":"yesterday","seq":4}',
        b'{"value":1,"quality":128,"ts":"2026-12-02T08:00:00Z","seq":0}',
        b"[1, 2]",
    ],
)
def test_what_is_not_a_tag_message_is_ignored(payload: bytes) -> None:
    assert parse_retained(payload) is None


def test_seqs_continue_and_the_gap_starts_at_the_oldest_retained_sample() -> None:
    decider = SampleDecider(range(128, 256), drop_bad=False)
    takeover = Takeover(
        {
            "System1/Area1/Tank1/Level": RetainedSample(41, 1.5, 128, 2_000),
            "System1/Area1/Pump1/Speed": RetainedSample(7, 30, 128, 1_000),
        }
    )
    marks = takeover.apply(decider, {"fast": [LEVEL, SPEED], "new": ["System1.Other"]})
    assert marks == {"fast": PollMark("fast", 1_000, 0)}  # a group nobody published: none
    decided = decider.decide(
        [
            Reading(LEVEL, 1.5, 128, 2_000),  # what the broker holds already: not again
            Reading(SPEED, 31, 128, 3_000),
            Reading("System1.Other", 1, 128, 3_000),
        ],
        0.0,
    )
    assert [(reading.name, seq) for reading, seq in decided] == [
        (SPEED, 8),
        ("System1.Other", 1),
    ]
