"""ISO 8601 UTC timestamps with milliseconds, the only time format on the wire."""

from __future__ import annotations

from datetime import UTC, datetime

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def format_ts(ms: int) -> str:
    """Format epoch milliseconds as ``2026-11-24T10:00:00.123Z``."""
    seconds, millis = divmod(ms, 1000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{millis:03d}Z"


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
