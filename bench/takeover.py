"""The takeover scenario: a gateway pair on the bench's broker, its active instance
SIGKILLed again and again, and how long a consumer goes without samples each time.

Two ``python -m gateway run`` processes share one configuration but for their instance
name, buffer and health port (``[redundancy] role = "auto"``). The subscriber follows
``P/redundancy/claim`` besides the tag topics. The broker hands it every message in the
order it took them in: the killed instance's samples all come before its will, the will
before the standby's claim, the claim before the first sample of the new active
instance. So the claims divide the samples into turns, one instance each, without any
label in the samples themselves.
"""

from __future__ import annotations

import dataclasses
import random
import statistics
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import orjson

from bench.monitor import cpu_seconds
from bench.processes import (
    BenchError,
    Broker,
    GatewayProcess,
    SimulatorProcess,
    find_tool,
    free_port,
    gateway_config,
    reaping,
)
from bench.scenarios import (
    SCAN_INTERVAL,
    WARM_UP_SETTLE,
    RunOptions,
    RunResult,
    left_behind,
    outbox_rows,
    percentile,
    sim_delta,
)
from bench.subscriber import Collector, Sample, Subscriber

ACTIVE_SCANS = 2
"""Scans the new active instance publishes before it is killed in turn: a gateway in
its stride, not one still starting. The kill then comes at a random point of a scan, as a
failure would, not right after one."""

STANDBY_TIMEOUT = 60.0
"""Seconds a restarted instance gets to stand by (start, connect, watch the status)."""


@dataclass(slots=True)
class Turn:
    """The samples of one instance's turn as active, from its claim to the next claim."""

    instance: str
    first_ns: int | None = None  # receive time of its first tag message
    last_ns: int | None = None  # and of its last


class PairCollector(Collector):
    """Counts samples as every scenario does, and sorts them into turns by the claims.

    Also keeps each sample's value, quality and timestamp under its (tag, seq): a seq that
    arrives again with another sample was used twice, once by each instance.
    """

    def __init__(self, prefix: str) -> None:
        super().__init__(prefix)
        self._claim = f"{prefix}/redundancy/claim"
        self._turns: list[Turn] = []
        self._contents: dict[Sample, bytes] = {}
        self.reused: set[Sample] = set()

    def filters(self) -> list[str]:
        """The tag topics and the pair's claims."""
        return [*super().filters(), self._claim]

    def feed(self, line: bytes) -> None:
        """A claim opens a turn; a tag message is counted, then put in the current turn."""
        key: Sample | None = None
        try:
            stamp, topic_raw, payload = line.split(b" ", 2)
            recv_ns = int(stamp.replace(b".", b""))
            topic = topic_raw.decode()
            if topic == self._claim:
                turn = Turn(str(orjson.loads(payload)["instance"]))
                with self._lock:
                    self._turns.append(turn)
                return
            if topic.startswith(self._tags_root):
                body = orjson.loads(payload)
                key = (topic[len(self._tags_root) :], int(body["seq"]))
                content = orjson.dumps([body["value"], body["quality"], body["ts"]])
        except (ValueError, KeyError, TypeError):
            key = None  # counted as unparsed below
        super().feed(line)
        if key is None:
            return
        with self._lock:
            if self._turns:
                turn = self._turns[-1]
                turn.first_ns = turn.first_ns or recv_ns
                turn.last_ns = recv_ns
            known = self._contents.setdefault(key, content)
            if known != content:
                self.reused.add(key)

    def turns(self) -> list[Turn]:
        """The turns so far, as copies."""
        with self._lock:
            return [dataclasses.replace(turn) for turn in self._turns]


class _Instance:
    """One instance of the pair: its config, buffer, health port and process."""

    def __init__(self, name: str, folder: Path) -> None:
        self.name = name
        self.buffer_path = folder / f"buffer-{name}.db"
        self.config_path = folder / f"gateway-{name}.toml"
        self.health_port = free_port()
        self.process = GatewayProcess(folder, self.config_path, f"gateway-{name}")

    def standing_by(self) -> bool:
        """Whether its ``/health`` says it is a standby connected to the broker."""
        url = f"http://127.0.0.1:{self.health_port}/health"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                body = orjson.loads(response.read())
        except (OSError, ValueError):  # not listening yet, or 503: not connected yet
            return False
        return bool(body.get("status") == "standby")


def retained_seqs(port: int, prefix: str, tags: int) -> dict[str, int]:
    """Each tag's seq as the broker retains it (tag as topic path): the last one the pair
    published, so every seq from 1 up to it must have reached the subscriber."""
    root = f"{prefix}/tags/"
    args = [
        find_tool("mosquitto_sub"),
        *("-h", "127.0.0.1", "-p", str(port), "-t", root + "#"),
        *("--retained-only", "-C", str(tags), "-W", "10", "-F", "%t %p"),
    ]
    result = subprocess.run(args, capture_output=True, timeout=30, check=False)
    seqs: dict[str, int] = {}
    for line in result.stdout.splitlines():
        topic, payload = line.split(b" ", 1)
        seqs[topic.decode().removeprefix(root)] = int(orjson.loads(payload)["seq"])
    if len(seqs) < tags:
        raise BenchError(f"the broker retains {len(seqs)} tags' last samples, not {tags}")
    return seqs


@dataclass(slots=True)
class _Measured:
    """What the takeovers left to compute the figures from."""

    start_ns: int
    end_ns: int
    kills_ns: list[int]
    changes: int
    skipped_s: float
    cpu: dict[str, float]
    buffer_rows_end: int
    exits: tuple[int, int]


class _PairRun:
    """The processes and measurements of one takeover run."""

    def __init__(self, options: RunOptions, broker: Broker, folder: Path) -> None:
        self.options = options
        self.broker = broker
        self.folder = folder / f"takeover-{options.run}"
        self.prefix = f"bench/takeover-{options.run}"
        self.sim = SimulatorProcess(
            self.folder,
            tags=options.tags,
            change_rate=options.scenario.change_rate,
            dialect=options.dialect,
            realistic=options.realistic,
        )
        self.collector = PairCollector(self.prefix)
        self.subscriber = Subscriber(
            self.folder,
            port=broker.port,
            prefix=self.prefix,
            client_id=f"bench-sub-takeover-{options.run}",
            collector=self.collector,
        )
        self.pair = (_Instance("a", self.folder), _Instance("b", self.folder))
        self.final = self.pair[0]
        """The instance active at the end, whose buffer holds what it did not send."""

    def execute(self) -> RunResult:
        """Start the pair, kill its active instance ``takeovers`` times, stop everything
        (whatever happens), and check what the subscriber received."""
        self.folder.mkdir()
        for instance in self.pair:
            instance.config_path.write_text(self._config(instance), encoding="utf-8")
        with reaping() as stack:
            stack.callback(self.sim.stop)
            self.sim.start()
            stack.callback(self.subscriber.stop)
            self.subscriber.start()
            for instance in self.pair:
                stack.callback(instance.process.stop)
            measured = self._takeovers()
            retained = retained_seqs(self.broker.port, self.prefix, len(self.collector.distinct))
            self.collector.set_targets(retained)
            self._wait(lambda: self.collector.targets_done_ns is not None, 30.0, "every seq")
            self.subscriber.wait_quiet(idle=1.0, timeout=30.0)
        return self._result(measured, retained)

    def _config(self, instance: _Instance) -> str:
        options = self.options
        return gateway_config(
            wincc_url=self.sim.url,
            mqtt_url=self.broker.url,
            client_id=f"bench-gateway-takeover-{options.run}",
            topic_prefix=self.prefix,
            interval=SCAN_INTERVAL,
            buffer_path=instance.buffer_path,
            payload="per-tag",
            dialect=options.dialect,
            health_port=instance.health_port,
            instance=instance.name,
        )

    def _takeovers(self) -> _Measured:
        options, collector = self.options, self.collector
        active, standby = self.pair
        active.process.start()
        self._wait(
            lambda: len(collector.distinct) >= options.tags,
            60.0 + options.tags / 100,
            f"the first sample of each of the {options.tags} tags",
            active,
        )
        standby.process.start()
        self._wait(standby.standing_by, STANDBY_TIMEOUT, "instance b to stand by", active, standby)
        time.sleep(WARM_UP_SETTLE)
        start_ns, before = time.time_ns(), self.sim.stats()
        started = time.monotonic()
        cpu = {"simulator": cpu_seconds(self.sim.pid), "broker": cpu_seconds(self.broker.pid)}
        kills: list[int] = []
        for number in range(1, options.takeovers + 1):
            self._wait(self._in_stride, options.seconds, "samples", active, standby)
            time.sleep(random.uniform(0, SCAN_INTERVAL))
            kills.append(time.time_ns())
            active.process.kill()
            what = f"takeover {number}: the first sample from instance {standby.name}"
            self._wait(partial(self._taken_over, number), options.seconds, what, standby)
            new = self.collector.turns()[number]
            if new.instance != standby.name:
                raise BenchError(f"takeover {number}: instance {new.instance} claimed the turn")
            active.process.start()  # it comes back as the standby
            what = f"instance {active.name} to stand by again"
            self._wait(active.standing_by, STANDBY_TIMEOUT, what, active, standby)
            self._progress(number, kills[-1])
            active, standby = standby, active
        self._wait(self._in_stride, options.seconds, "samples", active, standby)
        end_ns = time.time_ns()
        wall = time.monotonic() - started
        usage = {
            "simulator": 100.0 * (cpu_seconds(self.sim.pid) - cpu["simulator"]) / wall,
            "broker": 100.0 * (cpu_seconds(self.broker.pid) - cpu["broker"]) / wall,
        }
        changes, skipped = sim_delta(before, self.sim.stats())
        rows = outbox_rows(active.buffer_path)
        exits = (standby.process.stop(), active.process.stop())  # the standby first: no turn
        if exits != (0, 0):
            raise BenchError(
                f"the pair exited with {exits} on SIGTERM, not (0, 0):\n{active.process.log_tail()}"
            )
        self.final = active
        return _Measured(start_ns, end_ns, kills, changes, skipped, usage, rows, exits)

    def _in_stride(self) -> bool:
        """The active instance has published over ``ACTIVE_SCANS`` scans of its turn."""
        turn = self.collector.turns()[-1]
        if turn.first_ns is None or turn.last_ns is None:
            return False
        return turn.last_ns - turn.first_ns >= ACTIVE_SCANS * SCAN_INTERVAL * 1e9

    def _taken_over(self, number: int) -> bool:
        """Takeover ``number`` is done: its claim arrived and a sample after it."""
        turns = self.collector.turns()
        return len(turns) > number and turns[number].first_ns is not None

    def _progress(self, number: int, kill_ns: int) -> None:
        turns = self.collector.turns()
        old, new = turns[number - 1], turns[number]
        assert old.last_ns is not None and new.first_ns is not None
        print(
            f"  takeover {number}/{self.options.takeovers}: {old.instance} -> {new.instance}, "
            f"{(new.first_ns - old.last_ns) / 1e9:.2f} s without samples, "
            f"{(new.first_ns - kill_ns) / 1e9:.2f} s from the kill",
            flush=True,
        )

    def _wait(
        self, until: Callable[[], bool], timeout: float, what: str, *running: _Instance
    ) -> None:
        """Poll ``until`` (bounded), failing early if one of ``running`` exits."""
        deadline = time.monotonic() + timeout
        while not until():
            for instance in running:
                instance.process.check_running()
            if time.monotonic() > deadline:
                raise BenchError(f"timed out after {timeout:g} s waiting for {what}")
            time.sleep(0.05)

    def _result(self, measured: _Measured, retained: dict[str, int]) -> RunResult:
        collector, start, end = self.collector, measured.start_ns, measured.end_ns
        turns = collector.turns()
        takeovers, from_kill = [], []
        for number, kill_ns in enumerate(measured.kills_ns, start=1):
            old, new = turns[number - 1], turns[number]
            assert old.last_ns is not None and new.first_ns is not None
            takeovers.append((new.first_ns - old.last_ns) / 1e9)
            from_kill.append((new.first_ns - kill_ns) / 1e9)
        latencies = sorted(
            recv_ns / 1e6 - ts_ms
            for recv_ns, ts_ms in zip(collector.recv_ns, collector.ts_ms, strict=True)
            if start <= recv_ns <= end
        )
        seconds = (end - start) / 1e9
        messages = sum(1 for ns in collector.message_recv_ns if start <= ns <= end)
        published = sum(retained.values())
        received = sum(
            collector.has((tag, seq))
            for tag, last in retained.items()
            for seq in range(1, last + 1)
        )
        _, left = left_behind(self.final.buffer_path, collector)
        return RunResult(
            scenario="takeover",
            run=self.options.run,
            tags=self.options.tags,
            payload="per-tag",
            window_s=round(seconds, 3),
            sim_changes=measured.changes,
            sim_skipped_s=round(measured.skipped_s, 3),
            delivered=len(latencies),
            messages=messages,
            published=published,
            duplicates=collector.duplicates,
            seq_gaps=published - received,
            seq_gap_loss_pct=100.0 * (published - received) / published if published else 0.0,
            loss_vs_changes_pct=None,
            samples_per_s=len(latencies) / seconds,
            messages_per_s=messages / seconds,
            latency_p50_ms=percentile(latencies, 50),
            latency_p99_ms=percentile(latencies, 99),
            latency_max_ms=latencies[-1] if latencies else None,
            gateway_cpu_pct=None,
            gateway_peak_rss_mb=None,
            simulator_cpu_pct=measured.cpu["simulator"],
            broker_cpu_pct=measured.cpu["broker"],
            buffer_rows_end=measured.buffer_rows_end,
            buffer_samples_left=len(left),
            unparsed_messages=collector.unparsed,
            gateway_exit=max(measured.exits),
            takeovers=len(takeovers),
            takeover_p50_s=statistics.median(takeovers),
            takeover_max_s=max(takeovers),
            kill_to_first_p50_s=statistics.median(from_kill),
            kill_to_first_max_s=max(from_kill),
            reused_seqs=len(collector.reused),
            takeover_s=[round(s, 4) for s in takeovers],
            kill_to_first_s=[round(s, 4) for s in from_kill],
        )


def run_takeover(options: RunOptions, broker: Broker, folder: Path) -> RunResult:
    """One takeover run; every process it started is stopped whatever happens."""
    return _PairRun(options, broker, folder).execute()
