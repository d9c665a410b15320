from hypothesis import given
from hypothesis import strategies as st

from gateway.core.topics import TopicMap, escape_level, tag_path


def test_dots_become_levels() -> None:
    assert tag_path("System1.Area1.Tank1.Level") == "System1/Area1/Tank1/Level"


def test_wildcards_separators_nul_and_percent_are_escaped() -> None:
    assert escape_level("a+b#c/d\x00e%f") == "a%2Bb%23c%2Fd%00e%25f"
    assert tag_path("S.+.#") == "S/%2B/%23"


def test_unicode_is_kept() -> None:
    assert tag_path("Anlage.Füllstand") == "Anlage/Füllstand"


@given(st.text())
def test_escaped_paths_never_hold_wildcards_or_nul(name: str) -> None:
    path = tag_path(name)
    assert "+" not in path
    assert "#" not in path
    assert "\x00" not in path
    assert path.count("/") == name.count(".")


@given(st.lists(st.text(), unique=True, max_size=30))
def test_reverse_map_gives_back_the_exact_tag(names: list[str]) -> None:
    topics = TopicMap(names)
    paths = [topics.path(name) for name in names]
    assert len(set(paths)) == len(names)
    for name, path in zip(names, paths, strict=True):
        assert topics.tag(path) == name


def test_unknown_paths_map_to_nothing() -> None:
    topics = TopicMap(["System1.Tank1.Level"])
    assert topics.tag("System1/Tank1/Level") == "System1.Tank1.Level"
    assert topics.tag("System1/Tank1/level") is None
    assert topics.tag("System1/Tank1/Level/") is None
