"""Globs resolved by browsing: against the simulator (what is browsed) and a small tree."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway.core.commands import CommandPolicy
from gateway.core.globs import Glob
from gateway.core.models import Alarm, Reading, ReadResult, TagInfo, TagType, Value
from gateway.errors import WinCCNotFound, WinCCUnavailable
from gateway.simulator.server import Simulator
from gateway.wincc.resolve import resolve_tags
from tests.wincc.conftest import Recorder, TracedFactory


def browsed(recorder: Recorder) -> list[str]:
    """The folders the client browsed, in order."""
    return [e.query["path"] for e in recorder.paths("GET", "/api/dp/browse")]


async def test_star_within_a_level_browses_only_what_can_match(
    traced: tuple[TracedFactory, Recorder],
) -> None:
    make, recorder = traced
    result = await resolve_tags(make(), ["System1.Area1.Tank*.Level"])
    assert [tag.name for tag in result.tags] == sorted(
        f"System1.Area1.Tank{n}.Level" for n in range(1, 11)
    )
    assert result.unmatched == []
    assert {tag.type for tag in result.tags} == {TagType.FLOAT}
    assert sorted(browsed(recorder)) == sorted(
        ["System1.Area1.", *(f"System1.Area1.Tank{n}." for n in range(1, 11))]
    )


async def test_a_glob_of_folders_only_matches_no_tags_in_one_browse(
    traced: tuple[TracedFactory, Recorder],
) -> None:
    make, recorder = traced
    result = await resolve_tags(make(), ["System1.Area1.*"])
    assert (result.tags, result.unmatched) == ([], ["System1.Area1.*"])
    assert browsed(recorder) == ["System1.Area1."]


async def test_any_levels(traced: tuple[TracedFactory, Recorder], sim: Simulator) -> None:
    make, _ = traced
    result = await resolve_tags(make(), ["System1.**.Speed", "**.Area2.Meter1.*"])
    expected = [n for n in sim.plant.names if n.endswith(".Speed")]
    expected += [n for n in sim.plant.names if n.startswith("System1.Area2.Meter1.")]
    assert [tag.name for tag in result.tags] == sorted(expected)
    assert len(expected) > 20


async def test_everything(traced: tuple[TracedFactory, Recorder], sim: Simulator) -> None:
    make, _ = traced
    result = await resolve_tags(make(), ["**"])
    assert [tag.name for tag in result.tags] == sorted(sim.plant.names)


async def test_plain_names_browse_only_their_folder(
    traced: tuple[TracedFactory, Recorder],
) -> None:
    make, recorder = traced
    names = ["System1.Area1.Tank1.Setpoint", "System1.Area2.Pump3.Running"]
    result = await resolve_tags(make(), names)
    assert result.tags == [
        TagInfo(names[0], TagType.FLOAT, has_children=False, writable=True),
        TagInfo(names[1], TagType.BOOL, has_children=False, writable=True),
    ]
    assert browsed(recorder) == ["System1.Area1.Tank1.", "System1.Area2.Pump3."]


async def test_unmatched_duplicates_and_shared_folders(
    traced: tuple[TracedFactory, Recorder],
) -> None:
    make, recorder = traced
    patterns = [
        "System1.Area1.Tank1.Level",
        "System1.Area1.Tank1.*",  # overlaps the line above
        "System1.Area1.Tank1.Nope",  # folder exists, tag does not
        "System1.Area9.*.Level",  # folder does not exist (404)
        "Elsewhere",
        "System1.Area1.Tank1.Level",  # repeated
    ]
    result = await resolve_tags(make(), patterns)
    assert [tag.name for tag in result.tags] == [
        "System1.Area1.Tank1.Level",
        "System1.Area1.Tank1.Setpoint",
        "System1.Area1.Tank1.Temperature",
    ]
    assert result.unmatched == ["System1.Area1.Tank1.Nope", "System1.Area9.*.Level", "Elsewhere"]
    assert sorted(browsed(recorder)) == ["", "System1.Area1.Tank1.", "System1.Area9."]


async def test_an_outage_is_not_an_unmatched_pattern(
    traced: tuple[TracedFactory, Recorder], sim: Simulator
) -> None:
    make, _ = traced
    sim.faults.down = True
    with pytest.raises(WinCCUnavailable):
        await resolve_tags(make(), ["System1.**"])


class TreeClient:
    """A ``WinCCClient`` that only browses, over an in-memory tree of tag names."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = names
        self.browsed: list[str] = []
        self.batch_size = 1000

    async def browse(self, path: str) -> list[TagInfo]:
        self.browsed.append(path)
        prefix = f"{path}." if path else ""
        children: dict[str, TagInfo] = {}
        for name in self.names:
            if name.startswith(prefix):
                head, dot, _ = name[len(prefix) :].partition(".")
                full = prefix + head
                children[full] = TagInfo(full, None if dot else TagType.INT, bool(dot), False)
        if path and not children:
            raise WinCCNotFound(f"no folder {path}", status=404)
        return list(children.values())

    async def read_many(self, names: Sequence[str]) -> ReadResult:
        raise NotImplementedError

    async def read(self, name: str) -> Reading:
        raise NotImplementedError

    async def write(self, name: str, value: Value) -> Reading:
        raise NotImplementedError

    async def active_alarms(self) -> list[Alarm]:
        raise NotImplementedError

    async def acknowledge(self, alarm_id: str, comment: str | None = None) -> None:
        raise NotImplementedError

    async def history(self, name: str, start_ms: int, end_ms: int) -> AsyncIterator[Reading]:
        raise NotImplementedError
        yield

    async def close(self) -> None:
        raise NotImplementedError


TREE = ["a.b.c", "a.b.x.c", "a.b.x.y.c", "a.c", "a.d", "b.c", "a.b[1].c", "a.B.c"]


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("a.**.c", ["a.B.c", "a.b.c", "a.b.x.c", "a.b.x.y.c", "a.b[1].c", "a.c"]),
        ("a.**", ["a.B.c", "a.b.c", "a.b.x.c", "a.b.x.y.c", "a.b[1].c", "a.c", "a.d"]),
        ("**.c", ["a.B.c", "a.b.c", "a.b.x.c", "a.b.x.y.c", "a.b[1].c", "a.c", "b.c"]),
        ("a.b.**.c", ["a.b.c", "a.b.x.c", "a.b.x.y.c"]),
        ("a.**.x.**.c", ["a.b.x.c", "a.b.x.y.c"]),
        ("a.?.c", ["a.B.c", "a.b.c"]),  # ? is any one character
        ("a.b.c", ["a.b.c"]),
        ("a.b[[]1].c", ["a.b[1].c"]),  # a bracket is escaped as [[]
        ("a.[bB].*", ["a.B.c", "a.b.c"]),
        ("*", []),  # only folders at the top level
        ("a.b", []),  # a folder is not a tag
        ("a.*.*.*.c", ["a.b.x.y.c"]),
    ],
)
async def test_pattern_semantics(pattern: str, expected: list[str]) -> None:
    result = await resolve_tags(TreeClient(TREE), [pattern])
    assert [tag.name for tag in result.tags] == expected
    assert result.unmatched == ([] if expected else [pattern])


async def test_case_matters() -> None:
    result = await resolve_tags(TreeClient(TREE), ["A.**", "a.b.C"])
    assert (result.tags, result.unmatched) == ([], ["A.**", "a.b.C"])


async def test_each_folder_is_browsed_once_across_patterns() -> None:
    client = TreeClient(TREE)
    await resolve_tags(client, ["a.**.c", "a.b.*", "**"])
    assert sorted(client.browsed) == sorted(set(client.browsed))


SEGMENTS = ["a", "b", "c", "ab", "B", "b[1]"]
PATTERN_LEVELS = [*SEGMENTS, "*", "?", "**", "[ab]", "b*", "*b", "b[[]1]"]


def _leaves_only(names: list[str]) -> list[str]:
    """Names of which none is also a folder of another (a tree has leaves or folders)."""
    unique = sorted(set(names))
    return [n for n in unique if not any(other.startswith(n + ".") for other in unique)]


@settings(max_examples=300, deadline=None)
@given(
    names=st.lists(
        st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=4).map(".".join),
        min_size=1,
        max_size=12,
    ).map(_leaves_only),
    pattern=st.lists(st.sampled_from(PATTERN_LEVELS), min_size=1, max_size=5).map(".".join),
)
@example(names=["a"], pattern="a.**")  # a trailing ** also matches the named tag itself
def test_resolving_and_matching_agree(names: list[str], pattern: str) -> None:
    """Whatever the tree and the pattern: the tags a pattern resolves to by browsing are
    exactly the names it matches, so an allow-list admits only what the same pattern
    resolves to."""
    resolved = {tag.name for tag in asyncio.run(resolve_tags(TreeClient(names), [pattern])).tags}
    assert resolved == {name for name in names if Glob(pattern).matches(name)}
    allow = CommandPolicy(
        writable=[pattern], acknowledge=[], ranges=[], max_age=30, max_wait=2, rate=1, burst=1
    )
    assert {name for name in names if allow.may_write(name)} <= resolved
