"""Smoke tests of the benchmark: tiny steady and soak runs through ``python -m bench``'s
own entry point, so the bench cannot rot while the gateway changes under it."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import orjson
import pytest

from bench import scenarios
from bench.__main__ import main
from bench.processes import SimulatorProcess
from bench.soak import SoakFigures, UsageSample, soak_figures
from bench.takeover import PairCollector

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


SCRIPT_FIGURES = {
    "script_delivered",
    "script_samples_per_s",
    "script_latency_p50_ms",
    "script_latency_p99_ms",
    "script_cpu_pct",
    "script_peak_rss_mb",
    "script_published",
    "script_seq_gaps",
    "cpu_vs_script",
    "delivered_vs_script",
    "rss_vs_script",
}


def test_a_tiny_steady_run_reports_every_figure_and_loses_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _tiny_run(tmp_path)
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert "samples/s delivered" in out
    (path,) = tmp_path.glob("steady-*.json")
    document = orjson.loads(path.read_bytes())
    _check_run(document)
    # the reference script ran on the same plant, measured by the same collector
    assert document["settings"]["script"] is True
    (run,) = document["runs"]
    # at 200 tags the script may use less CPU in 2 s than the clock's 10 ms tick: no ratio
    measurable = {"cpu_vs_script"} if run["script_cpu_pct"] == 0 else set()
    assert all(run[key] is not None for key in SCRIPT_FIGURES - measurable)
    if not measurable:
        assert run["cpu_vs_script"] == pytest.approx(run["gateway_cpu_pct"] / run["script_cpu_pct"])
    assert document["median"].keys() >= SCRIPT_FIGURES
    assert run["script_published"] >= 200  # its first poll publishes every tag once
    assert run["script_seq_gaps"] == 0
    assert run["script_delivered"] > 0
    assert 0 < run["script_latency_p50_ms"] <= run["script_latency_p99_ms"] < 5000
    assert run["script_peak_rss_mb"] > 10  # MB: a Python process
    assert run["delivered_vs_script"] == pytest.approx(run["delivered"] / run["script_delivered"])
    assert run["rss_vs_script"] == pytest.approx(
        run["gateway_peak_rss_mb"] / run["script_peak_rss_mb"]
    )
    labels = ["script: samples/s delivered", "gateway / script: delivered"]
    if not measurable:  # a row whose every figure is missing is left out of the table
        labels.append("gateway / script: CPU")
    for label in labels:
        assert label in out


def test_no_script_skips_the_reference_script(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _tiny_run(tmp_path, "--no-script", "--realistic")
    out, err = capsys.readouterr()
    assert code == 0, out + err
    (path,) = tmp_path.glob("steady-*.json")
    document = orjson.loads(path.read_bytes())
    _check_run(document)
    assert document["settings"]["script"] is False
    assert document["settings"]["realistic"] is True
    (run,) = document["runs"]
    assert all(run[key] is None for key in SCRIPT_FIGURES)
    assert "gateway / script" not in out


def test_realistic_reaches_the_simulator(tmp_path: Path) -> None:
    realistic = SimulatorProcess(tmp_path, tags=10, change_rate=0.1, realistic=True)
    plain = SimulatorProcess(tmp_path, tags=10, change_rate=0.1)
    assert "--realistic" in realistic._args
    assert "--realistic" not in plain._args


def test_batch_payload_is_counted_or_refused_with_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _tiny_run(tmp_path, "--payload", "batch", "--no-script")
    out, err = capsys.readouterr()
    if code == 2:  # the gateway has no mqtt.payload = "batch" yet
        assert err.startswith("bench: error: --payload batch:")
        assert "Traceback" not in err
        assert not list(tmp_path.iterdir())
        return
    assert code == 0, out + err
    (path,) = tmp_path.glob("steady-*.json")
    _check_run(orjson.loads(path.read_bytes()))


def test_sparkplug_is_decoded_by_alias_and_an_open_status_page_read_through_the_run(
    tmp_path: Path,
) -> None:
    code = _tiny_run(tmp_path, "--payload", "sparkplug", "--status-page", "--no-script")
    assert code == 0
    (path,) = tmp_path.glob("steady-*.json")
    document = orjson.loads(path.read_bytes())
    _check_run(document)
    (run,) = document["runs"]
    assert run["payload"] == "sparkplug"
    assert run["unparsed_messages"] == 0  # every DDATA decoded, every alias born
    assert run["messages_per_s"] < run["samples_per_s"]  # one DDATA carries a read
    assert document["settings"]["status_page"] is True
    assert run["page_events"] >= 2  # one update a second while open


SOAK_FIGURES = {
    "warm_up_s",
    "rss_warm_up_mb",
    "rss_end_mb",
    "rss_min_mb",
    "rss_max_mb",
    "rss_change_pct",
    "rss_slope_mb_per_h",
    "cpu_after_warm_up_pct",
    "rss_samples_outside_band",
    "samples_per_s",
    "seq_gaps",
}


def _tiny_soak(tmp_path: Path, minutes: float) -> int:
    """A soak of 200 tags for a few seconds with one sample a second, references at 2 %."""
    argv = ["soak", "--tags", "200", "--minutes", str(minutes), "--sample-every", "1"]
    return main([*argv, "--ref-scale", "0.02", "--out", str(tmp_path)])


def test_a_short_soak_samples_rss_and_cpu_every_second_and_reports_the_figures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _tiny_soak(tmp_path, 0.06)  # 3.6 s: warm-up 0.72 s, then samples at 1, 2, 3, 3.6 s
    out, err = capsys.readouterr()
    (path,) = tmp_path.glob("soak-*.json")
    document = orjson.loads(path.read_bytes())
    (run,) = document["runs"]
    assert code == 0 or run["rss_samples_outside_band"] > 0, out + err
    assert run.keys() >= SOAK_FIGURES
    assert document["settings"]["sample_every_s"] == 1
    assert document["settings"]["warm_up_s"] == pytest.approx(0.72)
    assert [round(t) for t, _, _ in run["usage_samples"]] == [0, 1, 2, 3, 4]
    assert run["usage_samples"][-1][0] == pytest.approx(3.6, abs=0.3)
    assert all(rss > 10 for _, rss, _ in run["usage_samples"])  # MB: a Python process
    assert run["warm_up_s"] == pytest.approx(0.72)
    assert run["rss_min_mb"] <= run["rss_warm_up_mb"] <= run["rss_max_mb"]
    assert run["rss_min_mb"] <= run["rss_end_mb"] <= run["rss_max_mb"]
    assert run["rss_slope_mb_per_h"] is not None
    assert run["cpu_after_warm_up_pct"] >= 0
    assert run["seq_gaps"] == 0
    assert run["gateway_exit"] == 0
    assert run["samples_per_s"] > 0
    for label in ("gateway RSS at warm-up end, MB", "gateway RSS slope after warm-up, MB/h"):
        assert label in out
    assert ("FAIL: soak run 1: gateway RSS left" in out) is (code == 1)


def test_a_soak_whose_rss_leaves_the_band_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def leaking(samples: list[UsageSample], warm_up_s: float) -> SoakFigures:
        """The real figures, with two samples outside the band as a leak would leave."""
        return dataclasses.replace(soak_figures(samples, warm_up_s), samples_outside_band=2)

    monkeypatch.setattr(scenarios, "soak_figures", leaking)
    code = _tiny_soak(tmp_path, 0.03)
    out, err = capsys.readouterr()
    assert code == 1, out + err
    assert "FAIL: soak run 1: gateway RSS left ±10 % of its warm-up value" in out
    assert "in 2 samples" in out
    (path,) = tmp_path.glob("soak-*.json")
    (run,) = orjson.loads(path.read_bytes())["runs"]
    assert run["rss_samples_outside_band"] == 2
    assert run["seq_gaps"] == 0


TAKEOVER_FIGURES = {
    "takeovers",
    "takeover_p50_s",
    "takeover_max_s",
    "kill_to_first_p50_s",
    "kill_to_first_max_s",
    "reused_seqs",
    "takeover_s",
    "kill_to_first_s",
}


def test_a_pair_killed_twice_reports_each_takeover_and_loses_no_seq(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["takeover", "--tags", "200", "--takeovers", "2", "--out", str(tmp_path)]
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 0, out + err
    (path,) = tmp_path.glob("takeover-*.json")
    document = orjson.loads(path.read_bytes())
    assert document["settings"]["takeovers"] == 2
    assert document["references"] == []  # a takeover measures no rate against plain clients
    (run,) = document["runs"]
    assert run.keys() >= TAKEOVER_FIGURES
    assert document["median"].keys() >= TAKEOVER_FIGURES - {"takeover_s", "kill_to_first_s"}
    assert run["takeovers"] == 2
    assert len(run["takeover_s"]) == len(run["kill_to_first_s"]) == 2
    # the standby claims after a second of quiet, then reads the retained seqs and polls:
    # more than that second, and far less than the takeover setting's 10 s
    assert all(1.0 < s < 8.0 for s in run["takeover_s"] + run["kill_to_first_s"])
    # the last sample came before the kill, by less than one 1 s scan and the kill's wait
    # (one on its way at the kill may arrive just after it)
    for gap, from_kill in zip(run["takeover_s"], run["kill_to_first_s"], strict=True):
        assert -0.1 < gap - from_kill < 2.5
    assert run["takeover_p50_s"] <= run["takeover_max_s"]
    assert run["takeover_max_s"] == pytest.approx(max(run["takeover_s"]), abs=1e-3)
    assert run["kill_to_first_max_s"] == pytest.approx(max(run["kill_to_first_s"]), abs=1e-3)
    assert run["reused_seqs"] == 0
    assert run["seq_gaps"] == 0
    assert run["published"] >= 200  # the first poll publishes every tag once
    assert run["gateway_exit"] == 0
    assert "takeover: SIGKILL to next instance's first, p50 s" in out
    assert "takeover 2/2: b -> a" in out


def test_the_claims_divide_the_samples_into_turns_and_a_seq_used_twice_is_caught() -> None:
    collector = PairCollector("p")

    def line(at_ms: int, topic: str, body: dict[str, Any]) -> bytes:
        return f"{at_ms / 1000:.9f} p/{topic} ".encode() + orjson.dumps(body) + b"\n"

    def sample(seq: int, value: float, ts: str = "2026-01-01T00:00:00Z") -> dict[str, Any]:
        return {"value": value, "quality": 192, "good": True, "ts": ts, "seq": seq}

    for got in (
        line(1000, "redundancy/claim", {"instance": "a", "at": 1}),
        line(1100, "tags/T1", sample(1, 1.0)),
        line(2100, "tags/T1", sample(2, 2.0)),
        line(3200, "redundancy/claim", {"instance": "b", "at": 2}),
        line(3900, "tags/T1", sample(2, 2.0)),  # again, the same sample: a duplicate
        line(4100, "tags/T1", sample(3, 3.0, "2026-01-01T00:00:03Z")),
        line(4200, "tags/T1", sample(3, 3.5, "2026-01-01T00:00:04Z")),  # seq 3 used twice
    ):
        collector.feed(got)
    assert [(t.instance, t.first_ns, t.last_ns) for t in collector.turns()] == [
        ("a", 1_100_000_000, 2_100_000_000),
        ("b", 3_900_000_000, 4_200_000_000),
    ]
    assert collector.reused == {("T1", 3)}
    assert collector.duplicates == 2
    assert collector.received == 3


def test_ceiling_counts_batch_samples_of_a_sweeping_plant_with_nothing_lost(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["ceiling", "--tags", "2000", "--seconds", "3", "--ref-scale", "0.02"]
    code = main([*argv, "--no-script", "--out", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    (path,) = tmp_path.glob("ceiling-*.json")
    document = orjson.loads(path.read_bytes())
    _check_run(document)
    settings = document["settings"]
    assert (settings["payload"], settings["sweep"], settings["change_rate"]) == ("batch", True, 1)
    (run,) = document["runs"]
    assert run["payload"] == "batch"
    assert run["messages_per_s"] < run["samples_per_s"] / 100  # a poll's samples in one message
    # every drifting tag (85 % of them) changes between two scans, and each is counted
    assert run["samples_per_s"] > 0.7 * 2000
    assert run["sim_changes"] >= 0.9 * 2000 * run["window_s"]
    assert "ceiling" in out
