"""Tag names and alarm ids as MQTT topic levels, and back.

A tag's ``.`` becomes ``/``. Characters that MQTT forbids or reserves in a topic level
(``+``, ``#``, NUL, the level separator ``/`` inside a name, control characters) are
percent-escaped, and so is ``%`` itself, so every escaped path maps back to exactly one
name. So are the characters brokers refuse in any UTF-8 string of the protocol (mosquitto
closes the connection for them): the Unicode noncharacters (U+FDD0..U+FDEF and the last
two code points of every plane, U+FFFE, U+FFFF, U+1FFFE, ...) and lone surrogates, which
are not UTF-8 at all. Commands never guess a tag from a topic: ``TopicMap`` holds the
reverse map of the tags actually polled.
"""

from __future__ import annotations

import re

_NONCHARACTERS = "\ufdd0-\ufdef" + "".join(
    re.escape(chr(plane << 16 | 0xFFFE)) + "-" + re.escape(chr(plane << 16 | 0xFFFF))
    for plane in range(17)
)
_REFUSED = f"\\x00-\\x1f\\x7f-\\x9f\\ud800-\\udfff{_NONCHARACTERS}"
"""What brokers refuse in any string: controls, lone surrogates, noncharacters."""
_UNSAFE = re.compile(f"[%+#/{_REFUSED}]")
_NOT_A_TOPIC = re.compile(f"[+#{_REFUSED}]")


def is_topic_text(text: str) -> bool:
    """Whether ``text`` can stand in a topic as it is (no wildcards, nothing a broker
    refuses); for the configured prefix, which is not escaped."""
    return _NOT_A_TOPIC.search(text) is None


def _escape(match: re.Match[str]) -> str:
    # surrogatepass: a lone surrogate (from a JSON \udXXX escape) still gets its bytes
    return "".join(f"%{byte:02X}" for byte in match.group().encode("utf-8", "surrogatepass"))


def escape_level(text: str) -> str:
    """One topic level holding ``text`` verbatim (no separators, no wildcards)."""
    return _UNSAFE.sub(_escape, text)


def tag_path(name: str) -> str:
    """Topic path of a tag: its levels escaped, joined by ``/``."""
    return "/".join(escape_level(level) for level in name.split("."))


class TopicMap:
    """The topics of the known tags, and the exact tag behind each topic path."""

    __slots__ = ("_by_path", "_paths")

    def __init__(self, names: list[str] | tuple[str, ...] = ()) -> None:
        self._paths: dict[str, str] = {}
        self._by_path: dict[str, str] = {}
        for name in names:
            self.add(name)

    def add(self, name: str) -> str:
        """Register a tag and return its topic path."""
        path = self._paths.get(name)
        if path is None:
            path = tag_path(name)
            self._paths[name] = path
            self._by_path[path] = name
        return path

    def path(self, name: str) -> str:
        """Topic path of a registered tag (registering it if new)."""
        return self._paths.get(name) or self.add(name)

    def tag(self, path: str) -> str | None:
        """The tag behind a topic path, or None if no known tag maps there."""
        return self._by_path.get(path)
