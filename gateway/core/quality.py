"""WinCC quality codes: the classic byte ``QQSSSSLL`` decoded into words an operator reads.

Bits 7-6 are the main quality (bad, uncertain, good, good cascade), bits 5-2 the
sub-status, bits 1-0 the limit. All 256 texts are computed once, so decoding on the hot
path is a tuple lookup.
"""

from __future__ import annotations

_MAIN = ("bad", "uncertain", "good", "good (cascade)")
_SUB: dict[int, dict[int, str]] = {
    0: {
        0: "non-specific",
        1: "configuration error",
        2: "not connected",
        3: "device failure",
        4: "sensor failure",
        5: "last known value",
        6: "communication failure",
        7: "out of service",
        8: "initializing",
    },
    1: {
        0: "non-specific",
        1: "last usable value",
        2: "substitute value",
        3: "initial value",
        4: "sensor not accurate",
        5: "engineering units exceeded",
        6: "sub-normal",
    },
    2: {0: "non-specific", 6: "local override"},
    3: {0: "non-specific", 6: "local override"},
}
_LIMIT = ("", "low limited", "high limited", "constant")


def _describe(code: int) -> str:
    main = code >> 6
    sub = (code >> 2) & 0x0F
    text = f"{_MAIN[main]}: {_SUB[main].get(sub, f'sub-status {sub}')}"
    limit = _LIMIT[code & 0x03]
    return f"{text}, {limit}" if limit else text


_TEXTS = tuple(_describe(code) for code in range(256))


def quality_text(code: int) -> str:
    """``"bad: not connected"``, ``"uncertain: last usable value, high limited"``, ..."""
    if 0 <= code <= 255:
        return _TEXTS[code]
    return f"invalid quality code {code}"
