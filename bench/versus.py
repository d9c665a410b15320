"""The reference script measured like the gateway, right after it in the same run setup.

Same broker, a fresh simulator with the same seed, tag count and change rate, a subscriber
of its own on its own prefix, the same warm-up and window. Its figures and the gateway's
ratios to them go into the gateway's ``RunResult``, so every figure is also a ratio to a
competent script measured minutes apart on the same machine.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson

from bench.monitor import PeakRss, cpu_seconds
from bench.processes import BenchError, Broker, Child, SimulatorProcess, reaping
from bench.scenarios import SCAN_INTERVAL, WARM_UP_SETTLE, RunOptions, RunResult, percentile
from bench.subscriber import Collector, Subscriber

SCRIPTED = ("steady", "stress")
"""The scenarios whose runs measure the script too (drain and soak need durability)."""

SCRIPT_STOP_TIMEOUT = 30.0
"""Seconds the script gets to finish its publishes in flight on SIGTERM."""


@dataclass(frozen=True, slots=True)
class ScriptFigures:
    """What the script achieved in its window."""

    delivered: int  # distinct samples first received within the window
    samples_per_s: float
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    cpu_pct: float  # % of one core over the window
    peak_rss_mb: float  # whole run
    published: int  # samples the script published in its whole run (its report)
    seq_gaps: int  # published but never received


class _Script:
    """``python -m bench.script`` against one simulator and the bench's broker."""

    def __init__(self, folder: Path, *, url: str, broker: Broker, prefix: str) -> None:
        self.report = folder / "script-report.json"
        args = [sys.executable, "-m", "bench.script", "--url", url, "--broker", broker.url]
        args += ["--prefix", prefix, "--client-id", f"bench-script-{folder.name}"]
        args += ["--interval", str(SCAN_INTERVAL), "--report", str(self.report)]
        self._child = Child("script", args, folder / "script.log")

    @property
    def pid(self) -> int:
        """Process id of the script."""
        return self._child.pid

    def check_running(self) -> None:
        """Raise with the script's last lines if it has exited."""
        if not self._child.running():
            code = self._child.process.returncode
            raise BenchError(f"the script exited with {code}:\n{self._child.log_tail()}")

    def stop(self) -> int:
        """SIGTERM: it finishes the publishes in flight and writes its report."""
        return self._child.stop(SCRIPT_STOP_TIMEOUT)

    def last_seqs(self) -> dict[str, int]:
        """Each tag's last seq (as topic path), from the report written on stop."""
        try:
            seqs: dict[str, int] = orjson.loads(self.report.read_bytes())["seqs"]
        except (OSError, orjson.JSONDecodeError, KeyError) as exc:
            raise BenchError(f"the script left no report: {exc}\n{self._child.log_tail()}") from exc
        return seqs


def _wait(until: Callable[[], bool], script: _Script, timeout: float, what: str) -> None:
    """Poll ``until`` (bounded), failing early if the script exits."""
    deadline = time.monotonic() + timeout
    while not until():
        script.check_running()
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:g} s waiting for {what} from the script")
        time.sleep(0.1)


def _figures(
    collector: Collector, start_ns: int, end_ns: int, seqs: dict[str, int]
) -> tuple[int, list[float], int, int]:
    """Delivered in the window, their sorted latencies, published and seq gaps."""
    latencies = sorted(
        recv_ns / 1e6 - ts_ms
        for recv_ns, ts_ms in zip(collector.recv_ns, collector.ts_ms, strict=True)
        if start_ns <= recv_ns <= end_ns
    )
    published = sum(seqs.values())
    received = sum(min(collector.distinct.get(tag, 0), seq) for tag, seq in seqs.items())
    return len(latencies), latencies, published, published - received


def measure_script(options: RunOptions, broker: Broker, folder: Path) -> ScriptFigures:
    """One run of the script on the scenario's plant; every process it started is stopped."""
    name = f"{options.scenario.name}-{options.run}-script"
    run_folder = folder / name
    run_folder.mkdir()
    prefix = f"bench/{name}"
    sim = SimulatorProcess(
        run_folder,
        tags=options.tags,
        change_rate=options.scenario.change_rate,
        realistic=options.realistic,
    )
    subscriber = Subscriber(run_folder, port=broker.port, prefix=prefix, client_id=f"sub-{name}")
    collector = subscriber.collector
    with reaping() as stack:
        stack.callback(sim.stop)
        sim.start()
        stack.callback(subscriber.stop)
        subscriber.start()
        script = _Script(run_folder, url=sim.url, broker=broker, prefix=prefix)
        stack.callback(script.stop)
        rss = PeakRss(script.pid)
        stack.callback(rss.stop)
        rss.start()
        _wait(
            lambda: len(collector.distinct) >= options.tags,
            script,
            60.0 + options.tags / 100,
            f"the first sample of each of the {options.tags} tags",
        )
        time.sleep(WARM_UP_SETTLE)
        script.check_running()
        start_ns, cpu_start, started = time.time_ns(), cpu_seconds(script.pid), time.monotonic()
        time.sleep(options.seconds)
        script.check_running()
        cpu_pct = 100.0 * (cpu_seconds(script.pid) - cpu_start) / (time.monotonic() - started)
        end_ns = time.time_ns()
        exit_code = script.stop()
        if exit_code != 0:
            raise BenchError(f"the script exited with {exit_code} on SIGTERM, not 0")
        subscriber.wait_quiet(idle=1.0, timeout=60.0)
        rss.stop()
    delivered, latencies, published, gaps = _figures(
        collector, start_ns, end_ns, script.last_seqs()
    )
    return ScriptFigures(
        delivered=delivered,
        samples_per_s=delivered / ((end_ns - start_ns) / 1e9),
        latency_p50_ms=percentile(latencies, 50),
        latency_p99_ms=percentile(latencies, 99),
        cpu_pct=cpu_pct,
        peak_rss_mb=rss.peak_bytes / 1e6,
        published=published,
        seq_gaps=gaps,
    )


def add_script(result: RunResult, script: ScriptFigures) -> None:
    """The script's figures, and the gateway's as ratios to them, into the gateway's run."""
    result.script_delivered = script.delivered
    result.script_samples_per_s = script.samples_per_s
    result.script_latency_p50_ms = script.latency_p50_ms
    result.script_latency_p99_ms = script.latency_p99_ms
    result.script_cpu_pct = script.cpu_pct
    result.script_peak_rss_mb = script.peak_rss_mb
    result.script_published = script.published
    result.script_seq_gaps = script.seq_gaps
    result.cpu_vs_script = _ratio(result.gateway_cpu_pct, script.cpu_pct)
    result.delivered_vs_script = _ratio(result.delivered, script.delivered)
    result.rss_vs_script = _ratio(result.gateway_peak_rss_mb, script.peak_rss_mb)


def _ratio(gateway: float | None, script: float) -> float | None:
    return gateway / script if gateway is not None and script > 0 else None
