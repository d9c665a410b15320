from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.core import payloads
from gateway.core.models import Reading
from gateway.core.payloads import batch_payloads, compact_json, sample_payload
from gateway.core.quality import quality_text
from gateway.core.timestamps import MAX_MS, MIN_MS, format_ts


def test_sample_payload_fields() -> None:
    good = orjson.loads(sample_payload(Reading("T", 1.5, 128, 0), 7, good=True))
    assert good == {
        "value": 1.5,
        "quality": 128,
        "good": True,
        "ts": "1970-01-01T00:00:00.000Z",
        "seq": 7,
    }
    bad = orjson.loads(sample_payload(Reading("T", 1.5, 8, 0), 8, good=False, backfill=True))
    assert bad["quality_text"] == "bad: not connected"
    assert bad["backfill"] is True


@given(
    value=st.one_of(
        st.floats(),
        st.integers(-(2**63), 2**64 - 1),
        st.booleans(),
        st.text(),
    ),
    quality=st.integers(0, 255),
    ts_ms=st.integers(MIN_MS, MAX_MS),
    seq=st.integers(1, 2**63),
    good=st.booleans(),
    backfill=st.booleans(),
)
def test_sample_payload_is_the_json_of_its_fields(
    *, value: Any, quality: int, ts_ms: int, seq: int, good: bool, backfill: bool
) -> None:
    """Filled in from a template, the payload is byte for byte what encoding its fields
    as a JSON object gives, whatever the value (a string full of quotes included)."""
    body: dict[str, Any] = {
        "value": value,
        "quality": quality,
        "good": good,
        "ts": format_ts(ts_ms),
        "seq": seq,
    }
    if not good:
        body["quality_text"] = quality_text(quality)
    if backfill:
        body["backfill"] = True
    payload = sample_payload(Reading("T", value, quality, ts_ms), seq, good=good, backfill=backfill)
    assert payload == compact_json(body)


def test_batch_carries_every_sample_and_marks_the_bad_ones() -> None:
    samples = [
        (Reading(f"T{i}", i, 128 if i % 2 else 0x44, 1000 + i), i + 1, bool(i % 2))
        for i in range(4)
    ]
    (payload,) = batch_payloads(5000, samples, max_bytes=100_000)
    body = orjson.loads(payload)
    assert body["ts"] == "1970-01-01T00:00:05.000Z"
    assert [s["tag"] for s in body["samples"]] == ["T0", "T1", "T2", "T3"]
    assert body["samples"][1] == {
        "tag": "T1",
        "value": 1,
        "quality": 128,
        "ts": "1970-01-01T00:00:01.001Z",
        "seq": 2,
    }
    assert body["samples"][0]["good"] is False
    assert body["samples"][0]["quality_text"] == "uncertain: last usable value"
    assert "backfill" not in body


def test_large_batches_are_split_in_order_below_the_limit() -> None:
    samples = [(Reading(f"System1.Area1.Tag{i}", float(i), 128, i), i, True) for i in range(1000)]
    payloads = batch_payloads(0, samples, max_bytes=8 * 1024, backfill=True)
    assert len(payloads) > 5
    assert all(len(p) <= 8 * 1024 for p in payloads)
    bodies = [orjson.loads(p) for p in payloads]
    assert all(b["backfill"] is True for b in bodies)
    assert [s["seq"] for b in bodies for s in b["samples"]] == list(range(1000))
    # Well filled: parts sized from the average sample. Halving until they fit would
    # make 16 parts of 6 KiB here (the whole is a little over 8 x 12 KiB).
    whole = len(batch_payloads(0, samples, max_bytes=10**9)[0])
    limit = 12 * 1024
    parts = batch_payloads(0, samples, max_bytes=limit)
    assert all(len(p) <= limit for p in parts)
    assert len(parts) <= whole / (0.8 * limit) + 1


def test_a_large_batch_encodes_its_samples_about_once(monkeypatch: pytest.MonkeyPatch) -> None:
    samples = [(Reading(f"System1.Area1.Tag{i}", float(i), 128, i), i, True) for i in range(5000)]
    encoded: list[int] = []
    dumps = orjson.dumps

    def counted(body: Any) -> bytes:
        encoded.append(len(body["samples"]))
        return dumps(body)

    monkeypatch.setattr(payloads.orjson, "dumps", counted)
    parts = batch_payloads(0, samples, max_bytes=16 * 1024)
    assert [s["seq"] for p in parts for s in orjson.loads(p)["samples"]] == list(range(5000))
    assert sum(encoded) <= 5000 * 1.1, "each sample encoded once, a few more to size the parts"
