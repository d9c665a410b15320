"""The one matcher for tag lists and allow-lists: levels, not characters."""

from __future__ import annotations

import pytest

from gateway.core.globs import Glob, any_matches


@pytest.mark.parametrize(
    ("pattern", "name", "matches"),
    [
        ("System1.*.Setpoint", "System1.Area1.Setpoint", True),
        ("System1.*.Setpoint", "System1.Area1.Tank1.Setpoint", False),  # * is one level
        ("System1.**.Setpoint", "System1.Area1.Tank1.Setpoint", True),
        ("System1.**.Setpoint", "System1.Setpoint", True),  # ** may be no level at all
        ("System1.**", "System1.Area1.Tank1.Setpoint", True),
        ("System1.**", "System1", True),
        ("**", "anything.at.all", True),
        ("System1.Area?.*", "System1.Area1.Level", True),
        ("System1.Area?.*", "System1.Area10.Level", False),
        ("System1.Area[12].*", "System1.Area2.Level", True),
        ("System1.Area[12].*", "System1.Area3.Level", False),
        ("System1.*", "System1.Area1.Level", False),
        ("system1.**", "System1.Area1.Level", False),  # case matters
        ("1*", "1001", True),
        ("*", "Alarm.7", False),
    ],
)
def test_levels(pattern: str, name: str, matches: bool) -> None:
    assert Glob(pattern).matches(name) is matches


def test_no_pattern_matches_nothing() -> None:
    assert not any_matches([], "System1.Area1.Level")
    assert any_matches([Glob("x"), Glob("System1.**")], "System1.Area1.Level")
