"""ISO 8601 UTC timestamps with milliseconds, the only time format on the wire.

Formatting runs for every published sample. Samples of one poll fall within a few
seconds, so the text up to the second is computed once per second and kept.

The format carries the years 1 to 9999 (four digits) in UTC. A time outside them (a
"9999-12-31T23:59:59-14:00" is in the year 10000 in UTC) is refused when parsed, so no
value that cannot be written ever gets into the pipeline.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MIN_MS = -62_135_596_800_000
"""0001-01-01T00:00:00.000Z, the first instant the format carries (and .NET's minimum)."""
MAX_MS = 253_402_300_799_999
"""9999-12-31T23:59:59.999Z, the last."""
_NEVER_PREFIX = "0001-01-01"
"""How .NET servers write "never": their minimum date, in whatever zone or precision."""


@lru_cache(maxsize=4096)
def _second_text(seconds: int) -> str:
    # Not strftime: it writes the year 1 as "1" on Linux, which is not ISO 8601.
    t = _EPOCH + timedelta(seconds=seconds)
    return f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}."


_MILLIS_TEXT = tuple(f"{millis:03d}Z" for millis in range(1000))
"""The text after the second's, by millisecond: a lookup costs a tenth of formatting."""


def format_ts(ms: int) -> str:
    """Format epoch milliseconds as ``2026-11-24T10:00:00.123Z``.

    Raises ``ValueError`` outside the years 1 to 9999.
    """
    if not MIN_MS <= ms <= MAX_MS:
        raise ValueError(f"{ms} ms is outside the years 1 to 9999")
    return _second_text(ms // 1000) + _MILLIS_TEXT[ms % 1000]


PARSED_KEPT = 4096
"""Timestamps kept parsed. WinCC stamps the tags of one acquisition cycle with the same
time, so most changes of a read share a timestamp with another: looked up, it costs a
fifth of parsing it again. The least recently used ones go first."""


@lru_cache(maxsize=PARSED_KEPT)
def parse_ts(text: str) -> int:
    """Parse an ISO 8601 timestamp into epoch milliseconds; naive times are taken as UTC.

    Raises ``ValueError`` on anything that is not a timestamp or lies outside the years
    1 to 9999 in UTC, ``TypeError`` on anything that is not a string.
    """
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    delta = parsed - _EPOCH
    ms = (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
    if not MIN_MS <= ms <= MAX_MS:
        raise ValueError(f"timestamp {text[:40]!r} is outside the years 1 to 9999 in UTC")
    return ms


def parse_optional_ts(text: str | None) -> int | None:
    """Parse an optional time ("went at", "acknowledged at"): null and the .NET minimum
    date, which servers send for "never", are None; anything else as ``parse_ts``."""
    if text is None or (isinstance(text, str) and text.startswith(_NEVER_PREFIX)):
        return None
    return parse_ts(text)


def now_ms() -> int:
    """The wall clock in epoch milliseconds."""
    return int(datetime.now(UTC).timestamp() * 1000)
