"""Smoke test of the benchmark: a tiny steady run through ``python -m bench``'s own entry
point, so the bench cannot rot while the gateway changes under it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from bench.__main__ import main

pytestmark = pytest.mark.slow

FIGURES = {
    "delivered",
    "duplicates",
    "published",
    "seq_gaps",
    "seq_gap_loss_pct",
    "loss_vs_changes_pct",
    "sim_changes",
    "sim_skipped_s",
    "samples_per_s",
    "messages_per_s",
    "latency_p50_ms",
    "latency_p99_ms",
    "gateway_cpu_pct",
    "gateway_peak_rss_mb",
    "gateway_exit",
}


def _tiny_run(tmp_path: Path, *options: str) -> int:
    """A steady run of 200 tags for 2 s, references at 2 %: about 10 s in all."""
    argv = ["steady", "--tags", "200", "--seconds", "2", "--runs", "1", "--ref-scale", "0.02"]
    return main([*argv, *options, "--out", str(tmp_path)])


def _check_run(document: dict[str, Any]) -> None:
    assert [ref["name"] for ref in document["references"]] == [
        "mosquitto_pub",
        "mosquitto_pub_default",
        "aiomqtt_serial",
        "aiomqtt_gathered",
    ]
    assert all(ref["received"] == ref["messages"] for ref in document["references"])
    (run,) = document["runs"]
    assert run.keys() >= FIGURES
    assert document["median"].keys() >= FIGURES
    assert document["median"]["samples_per_s_vs_mosquitto_pub_default"] > 0
    assert run["seq_gaps"] == 0
    assert run["seq_gap_loss_pct"] == 0
    assert run["duplicates"] == 0
    assert run["gateway_exit"] == 0
    assert run["published"] >= 200  # the first poll publishes every tag once
    assert run["delivered"] > 0
    assert run["sim_skipped_s"] == 0  # 200 tags never outrun the simulator
    assert 0 < run["latency_p50_ms"] <= run["latency_p99_ms"] < 5000


def test_a_tiny_steady_run_reports_every_figure_and_loses_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _tiny_run(tmp_path)
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert "samples/s delivered" in out
    (path,) = tmp_path.glob("steady-*.json")
    _check_run(orjson.loads(path.read_bytes()))


def test_batch_payload_is_counted_or_refused_with_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _tiny_run(tmp_path, "--payload", "batch")
    out, err = capsys.readouterr()
    if code == 2:  # the gateway has no mqtt.payload = "batch" yet
        assert err.startswith("bench: error: --payload batch:")
        assert "Traceback" not in err
        assert not list(tmp_path.iterdir())
        return
    assert code == 0, out + err
    (path,) = tmp_path.glob("steady-*.json")
    _check_run(orjson.loads(path.read_bytes()))
