"""The scenarios: one run starts a simulator, a subscriber and a gateway, measures, and
stops them all, on the bench's broker.

- steady: a plant where 10 % of the tags change per second, 1 s scan.
- stress: nearly every tag changes every scan: the gateway's throughput ceiling.
- drain: the broker goes away until a backlog is buffered on disk, then comes back; how
  long the backlog takes to reach the subscriber while fresh samples keep coming.
- soak: the steady plant for a long run (30 minutes by default) while the gateway's RSS
  and CPU are sampled: does its memory stay flat once it has warmed up?
- takeover: a gateway pair whose active instance is killed again and again (its run is
  ``bench/takeover.py``).
- ceiling: batch payloads from a plant whose every drifting tag changes between two scans,
  on a simulator cheap enough (``--sweep``) that the gateway, not the source, sets the rate.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from bench.monitor import PeakRss, cpu_seconds, rss_bytes
from bench.page import OpenPage
from bench.processes import (
    SPARKPLUG_GROUP,
    BenchError,
    Broker,
    GatewayProcess,
    SimulatorProcess,
    UsageError,
    clean_env,
    free_port,
    gateway_config,
    reaping,
)
from bench.soak import SoakFigures, UsageSample, soak_figures, warm_up_seconds
from bench.subscriber import Collector, Sample, SparkplugCollector, Subscriber
from gateway.core.topics import tag_path

SCAN_INTERVAL = 1.0
"""Seconds between two polls of the one poll group."""

STRESS_RATE = 3.0
"""Changes per tag and second that make nearly every tag change within each 1 s scan.

The simulator spreads changes at random over the tags that drift (85 % of them:
setpoints and modes only change when written), so each drifting tag changes about 3.5
times a second and is left unchanged by a scan with a chance of e^-3.5, about 3 %. A
bool that toggled an even number of times, or an int that stepped back, shows no change
either: about 70 % of all tags publish a sample every scan.
"""

WARM_UP_SETTLE = 2.0
"""Seconds after every tag's first sample arrived before measuring: the first poll
publishes every tag at once, which would skew latency and CPU."""

CATCH_UP_LIMIT = 120.0
"""Seconds the warm-up waits, at most, for the gateway's buffer to hold no more than one
second of changes; a gateway that never catches up is then measured as it is."""

FILL_TIMEOUT = 120.0
"""Longest time the drain scenario waits for its backlog to build up on disk."""

CEILING_RATE = 1.0
"""Changes per tag and second of the ceiling's sweeping plant: it walks round the drifting
tags (85 % of them, less the few alarm-linked ones) a little faster than once a second, so
every one of them changes between two 1 s scans and each scan publishes about 85 % of
all tags."""


@dataclass(frozen=True, slots=True)
class Scenario:
    """A scenario's plant and default duration."""

    name: str
    tags: int  # default number of tags
    change_rate: float  # changes per tag and second, as the simulator takes it
    seconds: float  # steady/stress/ceiling: the measurement window; drain: longest drain
    summary: str
    payload: str = "per-tag"  # the payload when --payload does not name one
    sweep: bool = False  # the simulator's --sweep plant: cheap, every drifting tag in turn


SCENARIOS = {
    "steady": Scenario("steady", 10_000, 0.1, 30.0, "10 % of the tags change per second, 1 s scan"),
    # 20,000 tags (about 14,000 changed tags a scan) no longer saturate the gateway on
    # two cores; 30,000 (about 21,000) do, so the delivered rate is its ceiling and the
    # buffer grows.
    "stress": Scenario(
        "stress",
        30_000,
        STRESS_RATE,
        20.0,
        f"change rate {STRESS_RATE}/s: nearly every tag changes every 1 s scan",
    ),
    "drain": Scenario(
        "drain",
        10_000,
        0.1,
        120.0,
        "broker away until the backlog is on disk, then back; fresh samples keep flowing",
    ),
    "soak": Scenario(
        "soak",
        20_000,
        0.1,
        30 * 60.0,
        "10 % of the tags change per second for a long run; gateway RSS and CPU sampled",
    ),
    "takeover": Scenario(
        "takeover",
        1_000,
        0.1,
        60.0,
        "a gateway pair; the active instance SIGKILLed, the standby takes over, again and again",
    ),
    # 150,000 tags: about 127,000 drifting ones change each scan, more than the 100,000
    # samples a second a batch gateway is to deliver
    "ceiling": Scenario(
        "ceiling",
        150_000,
        CEILING_RATE,
        20.0,
        "batch payloads, every drifting tag changes between two 1 s scans (--sweep plant)",
        payload="batch",
        sweep=True,
    ),
}

ALL = ("steady", "stress", "drain")
"""What ``all`` runs: soak takes half an hour, takeover restarts gateways over and over and
ceiling starts 150,000 tags, so they run only when asked for."""


@dataclass(frozen=True, slots=True)
class RunOptions:
    """What one run does."""

    scenario: Scenario
    tags: int
    seconds: float
    payload: str  # "per-tag", "batch" or "sparkplug"
    backlog: int  # drain: samples to buffer before the broker comes back
    run: int  # 1-based number of the run within its scenario
    sample_every: float = 10.0  # soak: seconds between two RSS and CPU samples
    dialect: str = "rest"  # "unified": the gateway subscribes instead of polling
    realistic: bool = False  # the simulator's --realistic plant layout
    status_page: bool = False  # the gateway's status page open during the run
    takeovers: int = 20  # takeover: how many times the active instance is killed


@dataclass(slots=True)
class RunResult:
    """The figures of one run; None where a figure does not apply to the scenario."""

    scenario: str
    run: int
    tags: int
    payload: str
    window_s: float
    sim_changes: int
    sim_skipped_s: float  # the simulator fell behind by this much plant time; expect 0
    delivered: int  # distinct samples first received within the window
    messages: int  # MQTT messages received within the window
    published: int  # samples that left the gateway's buffer in the whole run
    duplicates: int  # samples received more than once, whole run
    seq_gaps: int  # published samples never received, whole run
    seq_gap_loss_pct: float
    loss_vs_changes_pct: float | None
    samples_per_s: float
    messages_per_s: float
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    latency_max_ms: float | None
    gateway_cpu_pct: float | None  # None for a pair, whose processes come and go
    gateway_peak_rss_mb: float | None
    simulator_cpu_pct: float
    broker_cpu_pct: float
    buffer_rows_end: int  # messages still in the gateway's buffer at the window's end
    buffer_samples_left: int  # samples the gateway kept in its buffer when it stopped
    unparsed_messages: int  # messages on the run's topics that were no samples; expect 0
    page_events: int | None = None  # --status-page: updates the open page received
    gateway_exit: int = -1  # set once the gateway has stopped
    backlog: int | None = None  # drain: samples buffered when the broker came back
    reconnect_s: float | None = None  # broker back -> first message at the subscriber
    backlog_s: float | None = None  # broker back -> the whole backlog at the subscriber
    drain_s: float | None = None  # broker back -> caught up (fresh samples too)
    drain_per_s: float | None = None
    fresh_latency_p50_ms: float | None = None
    fresh_latency_p99_ms: float | None = None
    warm_up_s: float | None = None  # soak: min(20 % of the run, 120 s)
    rss_warm_up_mb: float | None = None  # soak: first sample at or after the warm-up end
    rss_end_mb: float | None = None
    rss_min_mb: float | None = None  # soak: lowest after the warm-up
    rss_max_mb: float | None = None  # soak: highest after the warm-up
    rss_change_pct: float | None = None  # soak: end against the warm-up value
    rss_slope_mb_per_h: float | None = None  # soak: least squares after the warm-up
    cpu_after_warm_up_pct: float | None = None  # soak: mean, % of one core
    rss_samples_outside_band: int | None = None  # soak: above 0 is a FAIL
    usage_samples: list[tuple[float, float, float | None]] | None = None  # soak: s, MB, CPU %
    takeovers: int | None = None  # takeover: how many were measured
    takeover_p50_s: float | None = None  # last sample of the killed one -> first of the next
    takeover_max_s: float | None = None
    kill_to_first_p50_s: float | None = None  # the SIGKILL -> first sample of the next one
    kill_to_first_max_s: float | None = None
    reused_seqs: int | None = None  # takeover: seqs that carried two different samples
    takeover_s: list[float] | None = None  # takeover: each one, in order
    kill_to_first_s: list[float] | None = None
    script_delivered: int | None = None  # the reference script, in a run of its own
    script_samples_per_s: float | None = None
    script_latency_p50_ms: float | None = None
    script_latency_p99_ms: float | None = None
    script_cpu_pct: float | None = None
    script_peak_rss_mb: float | None = None
    script_published: int | None = None
    script_seq_gaps: int | None = None
    cpu_vs_script: float | None = None  # gateway CPU / script CPU
    delivered_vs_script: float | None = None  # gateway delivered / script delivered
    rss_vs_script: float | None = None  # gateway peak RSS / script peak RSS


@dataclass(slots=True)
class _Window:
    """What was measured between two instants, on the wall clock (ns) of %U stamps."""

    start_ns: int
    end_ns: int
    changes: int
    sim_skipped_s: float  # plant time the simulator skipped because it fell behind
    cpu: dict[str, float]  # process -> % of one core
    buffer_rows_end: int


class _Cpu:
    """CPU time of named processes between two snapshots."""

    def __init__(self, pids: dict[str, Callable[[], int]]) -> None:
        self._pids = pids
        self._start: dict[str, float] = {}

    def start(self) -> None:
        """Take the first snapshot."""
        self._start = {name: cpu_seconds(pid()) for name, pid in self._pids.items()}

    def percent(self, seconds: float) -> dict[str, float]:
        """CPU % of one core of each process since ``start``."""
        return {
            name: 100.0 * (cpu_seconds(pid()) - self._start[name]) / seconds
            for name, pid in self._pids.items()
        }


def preflight(folder: Path, payload: str) -> None:
    """Check, before anything starts, that the gateway accepts the config a run writes.

    ``wincc-gateway check-config`` names each problem in one line, so a refusal (such as
    ``--payload batch`` before the gateway has that mode) is a clear error.
    """
    path = folder / "preflight.toml"
    path.write_text(
        gateway_config(
            wincc_url="http://127.0.0.1:8443",
            mqtt_url="mqtt://127.0.0.1:1883",
            client_id="bench-preflight",
            topic_prefix="bench/preflight",
            interval=SCAN_INTERVAL,
            buffer_path=folder / "preflight.db",
            payload=payload,
        ),
        encoding="utf-8",
    )
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", "--config", str(path)],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=60,
        check=False,
    )
    if result.returncode == 0:
        return
    problems = result.stderr.strip()
    if payload == "batch" and "mqtt.payload" in problems:
        raise UsageError(
            "--payload batch: this gateway has no batch payload mode yet (its config "
            f'refuses mqtt.payload = "batch": {problems}); use --payload per-tag'
        )
    raise BenchError(f"the gateway refuses the config the bench writes:\n{problems}")


def outbox_rows(buffer_path: Path) -> int:
    """Messages in the gateway's buffer, read-only, beside the running gateway."""
    with contextlib.closing(_read_only(buffer_path)) as db:
        return int(db.execute("SELECT count(*) FROM outbox").fetchone()[0])


def _last_seqs(db: sqlite3.Connection) -> dict[str, int]:
    """Each tag's last seq in a gateway's buffer: in ``tag_state``, or in the log of tag
    states not folded into it yet."""
    return dict(
        db.execute(
            "SELECT name, max(seq) FROM (SELECT name, seq FROM tag_state "
            "UNION ALL SELECT name, seq FROM state_log) GROUP BY name"
        ).fetchall()
    )


def _read_only(buffer_path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{buffer_path.as_uri()}?mode=ro", uri=True, timeout=10)


def _samples_made(buffer_path: Path) -> int:
    """Samples the gateway has put in its buffer since it started: the sum of its seqs."""
    with contextlib.closing(_read_only(buffer_path)) as db:
        return sum(_last_seqs(db).values())


def _backlog_targets(buffer_path: Path, collector: Collector) -> tuple[dict[str, int], int]:
    """Per tag the highest seq waiting in the buffer, and how many samples wait."""
    targets: dict[str, int] = {}
    waiting = 0
    with contextlib.closing(_read_only(buffer_path)) as db:
        rows = db.execute("SELECT topic, payload FROM outbox").fetchall()
    for topic, payload in rows:
        for tag, seq, _ in collector.parse(topic, payload) or ():
            targets[tag] = max(seq, targets.get(tag, 0))
            waiting += 1
    return targets, waiting


def left_behind(buffer_path: Path, collector: Collector) -> tuple[dict[str, int], set[Sample]]:
    """What the stopped gateway left: per tag (as topic path) the last seq it gave a sample
    (``tag_state``), and the samples still in its buffer.

    Those go out at its next start. Some may have reached the broker already, their
    acknowledgement cut off by the stop: QoS 1 is at least once.
    """
    with contextlib.closing(_read_only(buffer_path)) as db:
        seqs = {tag_path(name): seq for name, seq in _last_seqs(db).items()}
        rows = db.execute("SELECT topic, payload FROM outbox").fetchall()
    left = {
        (tag, seq)
        for topic, payload in rows
        for tag, seq, _ in collector.parse(topic, payload) or ()
    }
    return seqs, left


def sim_delta(before: dict[str, Any], after: dict[str, Any]) -> tuple[int, float]:
    """Changes the simulator made, and plant time it skipped, between two stats."""
    changes = int(after["changes"]) - int(before["changes"])
    return changes, float(after["skipped_s"]) - float(before["skipped_s"])


def percentile(values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile of sorted values."""
    if not values:
        return None
    return values[min(len(values) - 1, max(0, math.ceil(pct / 100 * len(values)) - 1))]


@dataclass(slots=True)
class _Drain:
    """The drain scenario's own figures."""

    restart_ns: int  # when the broker was started again
    backlog: int  # samples buffered then
    backlog_ns: int  # when the subscriber had every one of them
    first_ns: int | None  # first message the subscriber received after the restart


class _Run:
    """The processes and measurements of one run."""

    def __init__(self, options: RunOptions, broker: Broker, folder: Path) -> None:
        name = options.scenario.name
        self.options = options
        self.broker = broker
        self.folder = folder / f"{name}-{options.run}"
        self.prefix = f"bench/{name}-{options.run}"
        self.buffer_path = self.folder / "buffer.db"
        self.config_path = self.folder / "gateway.toml"
        self.sim = SimulatorProcess(
            self.folder,
            tags=options.tags,
            change_rate=options.scenario.change_rate,
            dialect=options.dialect,
            realistic=options.realistic,
            sweep=options.scenario.sweep,
        )
        self.subscriber = Subscriber(
            self.folder,
            port=broker.port,
            prefix=self.prefix,
            client_id=f"bench-sub-{name}-{options.run}",
            collector=(
                SparkplugCollector(
                    self.prefix, group_id=SPARKPLUG_GROUP, edge_node_id=f"{name}-{options.run}"
                )
                if options.payload == "sparkplug"
                else None
            ),
        )
        self.collector = self.subscriber.collector
        self.gateway = GatewayProcess(self.folder, self.config_path)
        self.health_port = free_port() if options.status_page else None
        self.page: OpenPage | None = None
        self.cpu = _Cpu(
            {
                "gateway": lambda: self.gateway.pid,
                "simulator": lambda: self.sim.pid,
                "broker": lambda: self.broker.pid,
            }
        )

    def execute(self) -> RunResult:
        """Start everything, measure, stop everything (whatever happens), compute."""
        options = self.options
        self.folder.mkdir()
        self.config_path.write_text(
            gateway_config(
                wincc_url=self.sim.url,
                mqtt_url=self.broker.url,
                client_id=f"bench-gateway-{options.scenario.name}-{options.run}",
                topic_prefix=self.prefix,
                interval=SCAN_INTERVAL,
                buffer_path=self.buffer_path,
                payload=options.payload,
                dialect=options.dialect,
                health_port=self.health_port,
            ),
            encoding="utf-8",
        )
        with reaping() as stack:
            stack.callback(self.sim.stop)
            self.sim.start()
            stack.callback(self.subscriber.stop)
            self.subscriber.start()
            stack.callback(self.gateway.stop)
            self.gateway.start()
            if self.health_port is not None:
                page = self.page = OpenPage(self.health_port)
                stack.callback(page.stop)
                page.start()
            rss = PeakRss(self.gateway.pid)
            stack.callback(rss.stop)
            rss.start()
            self._wait(
                lambda: len(self.collector.distinct) >= options.tags,
                60.0 + options.tags / 100,
                f"the first sample of each of the {options.tags} tags",
            )
            self._sleep(WARM_UP_SETTLE)
            if options.scenario.name in ("steady", "soak"):
                self._catch_up()
            drain = None
            usage: list[UsageSample] = []
            if options.scenario.name == "drain":
                window, drain = self._drain_window()
            elif options.scenario.name == "soak":
                window, usage = self._soak_window()
            else:
                window = self._steady_window()
            exit_code = self.gateway.stop()
            if exit_code != 0:
                raise BenchError(
                    f"the gateway exited with {exit_code} on SIGTERM, not 0:\n"
                    f"{self.gateway.log_tail()}"
                )
            self.subscriber.wait_quiet(idle=1.0, timeout=60.0)
            rss.stop()
        result = self._result(window, drain, rss.peak_bytes)
        result.gateway_exit = exit_code
        if usage:
            _add_soak(result, usage, soak_figures(usage, warm_up_seconds(options.seconds)))
        return result

    def _wait(self, until: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll ``until`` (bounded), failing early if the gateway exits."""
        deadline = time.monotonic() + timeout
        while not until():
            self.gateway.check_running()
            if time.monotonic() > deadline:
                raise BenchError(f"timed out after {timeout:g} s waiting for {what}")
            time.sleep(0.1)

    def _catch_up(self) -> None:
        """Wait until the first publication of every tag has left the buffer (no more than
        one second of changes waits), so the window measures the steady state, not the
        start; at most ``CATCH_UP_LIMIT`` seconds."""
        options = self.options
        one_second = max(1000, round(options.tags * options.scenario.change_rate))
        deadline = time.monotonic() + CATCH_UP_LIMIT
        while outbox_rows(self.buffer_path) > one_second and time.monotonic() < deadline:
            self._sleep(0.5)

    def _sleep(self, seconds: float) -> None:
        """Sleep, failing early if the gateway exits."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.gateway.check_running()
            time.sleep(min(0.25, left))

    def _steady_window(self) -> _Window:
        start_ns = time.time_ns()
        self.cpu.start()
        before = self.sim.stats()
        started = time.monotonic()
        self._sleep(self.options.seconds)
        end_ns = time.time_ns()
        usage = self.cpu.percent(time.monotonic() - started)
        changes, skipped = sim_delta(before, self.sim.stats())
        return _Window(start_ns, end_ns, changes, skipped, usage, outbox_rows(self.buffer_path))

    def _soak_window(self) -> tuple[_Window, list[UsageSample]]:
        """The steady window, run long, with the gateway's RSS and CPU sampled every
        ``sample_every`` seconds from its start, and once more at its end."""
        seconds, every = self.options.seconds, self.options.sample_every
        process = psutil.Process(self.gateway.pid)
        start_ns = time.time_ns()
        self.cpu.start()
        before = self.sim.stats()
        started = time.monotonic()
        samples = [self._usage(process, 0.0)]
        step = 1
        while samples[-1].t_s < seconds:
            self._sleep(started + min(step * every, seconds) - time.monotonic())
            at = time.monotonic() - started
            samples.append(self._usage(process, at))
            step += 1
            if int(at // 60) > int(samples[-2].t_s // 60):  # a progress line a minute
                previous, last = samples[-2], samples[-1]
                cpu = 100.0 * (last.cpu_s - previous.cpu_s) / max(1e-9, at - previous.t_s)
                print(
                    f"  {at / 60:.0f}/{seconds / 60:g} min: gateway RSS "
                    f"{last.rss_bytes / 1e6:.1f} MB, CPU {cpu:.0f} %, "
                    f"{self.collector.received:,} samples received",
                    flush=True,
                )
        end_ns = time.time_ns()
        usage = self.cpu.percent(time.monotonic() - started)
        changes, skipped = sim_delta(before, self.sim.stats())
        window = _Window(start_ns, end_ns, changes, skipped, usage, outbox_rows(self.buffer_path))
        return window, samples

    def _usage(self, process: psutil.Process, at: float) -> UsageSample:
        """The gateway's RSS and CPU time now; a clear error if it has exited meanwhile."""
        try:
            return UsageSample(at, rss_bytes(process), cpu_seconds(process.pid))
        except psutil.Error as exc:
            self.gateway.check_running()  # names the exit code and the gateway's last lines
            raise BenchError(f"cannot read the gateway's RSS and CPU time: {exc}") from exc

    def _drain_window(self) -> tuple[_Window, _Drain]:
        """Broker away until the backlog is on disk; then from its restart until the
        gateway has caught up: the backlog and the fresh samples queued behind it are
        with the subscriber, and the buffer holds no more than one scan's changes."""
        options, sim, collector = self.options, self.sim, self.collector
        self.broker.stop()
        sim.set_change_rate(STRESS_RATE)  # fill quickly; the drain runs at the steady rate
        # nothing arrives while the broker is away: what was made and not received waits
        self._wait(
            lambda: _samples_made(self.buffer_path) - collector.received >= options.backlog,
            FILL_TIMEOUT,
            f"{options.backlog} samples in the gateway's buffer",
        )
        sim.set_change_rate(options.scenario.change_rate)
        targets, backlog = _backlog_targets(self.buffer_path, collector)
        collector.set_targets(targets)
        before = sim.stats()
        restart_ns = time.time_ns()
        self.broker.start()
        self.cpu.start()  # after the start: the broker is a new process
        started = time.monotonic()
        deadline = started + options.seconds

        def done() -> bool:
            return collector.targets_done_ns is not None

        self._wait(done, deadline - time.monotonic(), "the backlog to reach the subscriber")
        backlog_ns = collector.targets_done_ns or time.time_ns()
        one_scan = max(1, round(options.tags * options.scenario.change_rate * SCAN_INTERVAL))
        while True:
            targets, waiting = _backlog_targets(self.buffer_path, collector)
            if waiting <= one_scan:
                break
            collector.set_targets(targets)
            self._wait(done, deadline - time.monotonic(), "the gateway to catch up")
        usage = self.cpu.percent(time.monotonic() - started)
        end_ns = collector.targets_done_ns or time.time_ns()
        changes, skipped = sim_delta(before, sim.stats())
        window = _Window(restart_ns, end_ns, changes, skipped, usage, outbox_rows(self.buffer_path))
        first_ns = collector.first_recv_after(restart_ns)
        return window, _Drain(restart_ns, backlog, backlog_ns, first_ns)

    def _result(self, window: _Window, drain: _Drain | None, peak_rss: int) -> RunResult:
        collector = self.collector
        start, end = window.start_ns, window.end_ns
        seconds = (end - start) / 1e9
        latencies: list[float] = []
        fresh: list[float] = []
        fresh_from_ms = drain.restart_ns // 1_000_000 if drain else None
        for recv_ns, ts_ms in zip(collector.recv_ns, collector.ts_ms, strict=True):
            if start <= recv_ns <= end:
                latency = recv_ns / 1e6 - ts_ms
                latencies.append(latency)
                if fresh_from_ms is not None and ts_ms >= fresh_from_ms:
                    fresh.append(latency)
        latencies.sort()
        fresh.sort()
        messages = sum(1 for ns in collector.message_recv_ns if start <= ns <= end)
        seqs, left = left_behind(self.buffer_path, collector)
        # every seq from 1 to the last is either received or still waiting in the buffer
        published = sum(seqs.values()) - sum(1 for sample in left if not collector.has(sample))
        received = sum(min(collector.distinct.get(tag, 0), seq) for tag, seq in seqs.items())
        delivered = len(latencies)
        result = RunResult(
            scenario=self.options.scenario.name,
            run=self.options.run,
            tags=self.options.tags,
            payload=self.options.payload,
            window_s=round(seconds, 3),
            sim_changes=window.changes,
            sim_skipped_s=round(window.sim_skipped_s, 3),
            delivered=delivered,
            messages=messages,
            published=published,
            duplicates=collector.duplicates,
            seq_gaps=published - received,
            seq_gap_loss_pct=100.0 * (published - received) / published if published else 0.0,
            loss_vs_changes_pct=(
                None if drain or not window.changes else 100.0 * (1 - delivered / window.changes)
            ),
            samples_per_s=delivered / seconds,
            messages_per_s=messages / seconds,
            latency_p50_ms=percentile(latencies, 50),
            latency_p99_ms=percentile(latencies, 99),
            latency_max_ms=latencies[-1] if latencies else None,
            gateway_cpu_pct=window.cpu["gateway"],
            gateway_peak_rss_mb=peak_rss / 1e6,
            simulator_cpu_pct=window.cpu["simulator"],
            broker_cpu_pct=window.cpu["broker"],
            buffer_rows_end=window.buffer_rows_end,
            buffer_samples_left=len(left),
            unparsed_messages=collector.unparsed,
            page_events=None if self.page is None else self.page.events,
        )
        if drain is not None:
            result.backlog = drain.backlog
            result.backlog_s = (drain.backlog_ns - drain.restart_ns) / 1e9
            result.drain_s = seconds
            if drain.first_ns is not None:
                result.reconnect_s = (drain.first_ns - drain.restart_ns) / 1e9
                flowing = sum(1 for ns in collector.recv_ns if drain.first_ns <= ns <= end)
                result.drain_per_s = flowing / max(1e-9, (end - drain.first_ns) / 1e9)
            result.fresh_latency_p50_ms = percentile(fresh, 50)
            result.fresh_latency_p99_ms = percentile(fresh, 99)
        return result


def _add_soak(result: RunResult, samples: list[UsageSample], figures: SoakFigures) -> None:
    """The soak figures, and every sample with the CPU % since the one before it."""
    result.warm_up_s = figures.warm_up_s
    result.rss_warm_up_mb = figures.warm_up_rss_mb
    result.rss_end_mb = figures.end_rss_mb
    result.rss_min_mb = figures.min_rss_mb
    result.rss_max_mb = figures.max_rss_mb
    result.rss_change_pct = figures.rss_change_pct
    result.rss_slope_mb_per_h = figures.rss_slope_mb_per_h
    result.cpu_after_warm_up_pct = figures.cpu_mean_pct
    result.rss_samples_outside_band = figures.samples_outside_band
    series: list[tuple[float, float, float | None]] = [(0.0, samples[0].rss_bytes / 1e6, None)]
    for previous, sample in itertools.pairwise(samples):
        elapsed = max(1e-9, sample.t_s - previous.t_s)
        cpu = 100.0 * (sample.cpu_s - previous.cpu_s) / elapsed
        series.append((round(sample.t_s, 3), round(sample.rss_bytes / 1e6, 3), round(cpu, 1)))
    result.usage_samples = series


def run_once(options: RunOptions, broker: Broker, folder: Path) -> RunResult:
    """One run of a scenario; every process it started is stopped whatever happens."""
    return _Run(options, broker, folder).execute()
