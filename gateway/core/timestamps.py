"""ISO 8601 UTC timestamps with milliseconds, the only time format on the wire.

Formatting runs for every published sample. Samples of one poll fall within a few
seconds, so the text up to the second is computed once per second and kept.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@lru_cache(maxsize=4096)
def _second_text(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.")


def format_ts(ms: int) -> str:
    """Format epoch milliseconds as ``2026-11-24T10:00:00.123Z``."""
    seconds, millis = divmod(ms, 1000)
    return f"{_second_text(seconds)}{millis:03d}Z"


def parse_ts(text: str) -> int:
    """Parse an ISO 8601 timestamp into epoch milliseconds; naive times are taken as UTC.

    Raises ``ValueError`` on anything that is not a timestamp.
    """
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    delta = parsed - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def now_ms() -> int:
    """The wall clock in epoch milliseconds."""
    return int(datetime.now(UTC).timestamp() * 1000)
