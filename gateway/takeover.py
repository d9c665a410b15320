"""What a standby learns from the broker when it takes over, and how the gateway continues
from it: every tag's seq after the last one the broker retained, and a gap from the oldest
retained timestamp of each group, filled from the WinCC archive.

The retained per-tag messages are the one record both instances share: whatever the
active instance published is there, whatever it had not yet sent is gone with it and is
filled from the archive under the next seqs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson

from gateway.buffer.store import PollMark
from gateway.core.models import Value
from gateway.core.samples import SampleDecider
from gateway.core.timestamps import parse_ts
from gateway.core.topics import tag_path


@dataclass(frozen=True, slots=True)
class RetainedSample:
    """The last sample of a tag the broker keeps."""

    seq: int
    value: Value
    quality: int
    ts_ms: int


def parse_retained(payload: bytes) -> RetainedSample | None:
    """A retained per-tag message (``{"value", "quality", "ts", "seq", ...}``); None for
    anything else (an empty message clearing the topic, a foreign payload)."""
    try:
        body = orjson.loads(payload)
        seq, quality = body["seq"], body["quality"]
        if not isinstance(seq, int) or not isinstance(quality, int) or seq < 1:
            return None
        return RetainedSample(seq, body["value"], quality, parse_ts(body["ts"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


@dataclass(slots=True)
class Takeover:
    """The retained samples under the prefix's ``tags/``, by tag topic path."""

    samples: dict[str, RetainedSample] = field(default_factory=dict)

    def apply(self, decider: SampleDecider, groups: dict[str, list[str]]) -> dict[str, PollMark]:
        """Continue each tag's seq and last value from its retained sample; return, per
        group, the mark to fill the gap from (its oldest retained timestamp; the host
        time of 0 lets the window reach back that far, ``backfill.max_gap`` bounding it)."""
        seqs: dict[str, int] = {}
        last: dict[str, tuple[Value, int]] = {}
        stamps: dict[str, int] = {}
        marks: dict[str, PollMark] = {}
        for group, names in groups.items():
            oldest: int | None = None
            for name in names:
                sample = self.samples.get(tag_path(name))
                if sample is None:
                    continue
                seqs[name] = sample.seq
                last[name] = (sample.value, sample.quality)
                stamps[name] = sample.ts_ms
                oldest = sample.ts_ms if oldest is None else min(oldest, sample.ts_ms)
            if oldest is not None:
                marks[group] = PollMark(group, oldest, 0)
        decider.restore(seqs, last, stamps)
        return marks
