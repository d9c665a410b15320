"""Readings handed out again while a tag stays unchanged, for the polling path.

Between two changes a tag comes back poll after poll with the same value, quality and
timestamp text. Handing out the very same ``Reading`` then saves building it and parsing
its timestamp, and lets the change detector skip it by identity: at 50,000 tags a second
most readings are repeats.
"""

from __future__ import annotations

from gateway.core.models import Reading, Value, new_reading
from gateway.core.timestamps import parse_ts


class ReadingMemo:
    """The last reading of each tag, with the timestamp text it was parsed from."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: dict[str, tuple[str, Reading]] = {}

    def reading(self, name: str, value: Value, quality: int, ts_text: str) -> Reading:
        """The reading of ``name``: the one handed out last time if nothing differs
        (the value's type included: ``1 == 1.0 == True``), else a new one.

        Raises ``ValueError`` when ``ts_text`` is not a timestamp.
        """
        last = self._last.get(name)
        if last is not None and last[0] == ts_text:
            reading = last[1]
            if (
                reading.quality == quality
                and reading.value == value
                and type(reading.value) is type(value)
            ):
                return reading
        reading = new_reading((name, value, quality, parse_ts(ts_text)))
        self._last[name] = (ts_text, reading)
        return reading
