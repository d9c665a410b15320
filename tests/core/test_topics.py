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


def is_refused_by_brokers(char: str) -> bool:
    """What mosquitto refuses in a UTF-8 string: controls, noncharacters, surrogates."""
    code = ord(char)
    return (
        code < 0x20
        or 0x7F <= code <= 0x9F
        or 0xD800 <= code <= 0xDFFF
        or 0xFDD0 <= code <= 0xFDEF
        or code & 0xFFFE == 0xFFFE
    )


def test_noncharacters_controls_and_lone_surrogates_are_escaped() -> None:
    assert escape_level("a\ufffeb") == "a%EF%BF%BEb"
    assert escape_level("\uffff\ufdd0\ufdef") == "%EF%BF%BF%EF%B7%90%EF%B7%AF"
    assert escape_level("\U0001fffe\U0010ffff") == "%F0%9F%BF%BE%F4%8F%BF%BF"
    assert escape_level("x\ud800") == "x%ED%A0%80"
    assert escape_level("tab\there\x7f\x85") == "tab%09here%7F%C2%85"
    assert escape_level("\ufdcf\ufdf0\ufffd") == "\ufdcf\ufdf0\ufffd"  # ordinary characters


@given(st.text(alphabet=st.characters(exclude_categories=())))
def test_escaped_paths_are_valid_mqtt_utf8(name: str) -> None:
    path = tag_path(name)
    path.encode("utf-8")  # no lone surrogate left
    assert not any(is_refused_by_brokers(char) for char in path)


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
