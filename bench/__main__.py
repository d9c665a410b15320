"""``python -m bench [steady|stress|drain|soak|takeover|all]``: parses arguments and calls;
see README.md."""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from bench.processes import BenchError, Broker, reaping
from bench.reference import Reference, measure_references
from bench.report import (
    RESULTS,
    Figures,
    format_references,
    format_table,
    machine,
    median,
    write_json,
)
from bench.scenarios import ALL, SCENARIOS, RunOptions, RunResult, preflight, run_once
from bench.soak import RSS_BAND_PCT, WARM_UP_MAX_S, WARM_UP_SHARE, warm_up_seconds
from bench.takeover import run_takeover
from bench.versus import SCRIPTED, add_script, measure_script

DEFAULT_BACKLOG = 100_000


def build_parser() -> argparse.ArgumentParser:
    """The bench's arguments; ``--help`` is their documentation."""
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure the gateway end to end (simulator -> gateway -> mosquitto -> "
        "subscriber) on this machine, next to plain MQTT clients on the same broker.",
    )
    parser.add_argument(
        "scenario",
        nargs="?",
        default="all",
        choices=[*SCENARIOS, "all"],
        help="what to measure (default all: "
        + ", ".join(ALL)
        + "; soak, takeover and ceiling only "
        "when named)",
    )
    parser.add_argument(
        "--tags",
        type=int,
        help="tags to poll (defaults: "
        + ", ".join(f"{s.name} {s.tags:,}" for s in SCENARIOS.values())
        + ")",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        help="measurement window of steady and stress (defaults: steady "
        f"{SCENARIOS['steady'].seconds:g}, stress {SCENARIOS['stress'].seconds:g}); drain "
        f"measures until the gateway has caught up, at most {SCENARIOS['drain'].seconds:g} s",
    )
    parser.add_argument(
        "--minutes",
        type=float,
        default=SCENARIOS["soak"].seconds / 60,
        help=f"soak: how long the run lasts (default {SCENARIOS['soak'].seconds / 60:g}; "
        f"fractions allowed); the first {100 * WARM_UP_SHARE:g} %% of it, at most "
        f"{WARM_UP_MAX_S:g} s, is warm-up",
    )
    parser.add_argument(
        "--sample-every",
        type=float,
        default=10.0,
        help="soak: seconds between two samples of the gateway's RSS and CPU (default 10)",
    )
    parser.add_argument(
        "--takeovers",
        type=int,
        default=20,
        help="takeover: how many times the active instance of the pair is SIGKILLed (default 20)",
    )
    parser.add_argument(
        "--runs", type=int, default=1, help="runs per scenario; figures are their median"
    )
    parser.add_argument(
        "--payload",
        choices=("per-tag", "batch", "sparkplug"),
        help="per-tag: one message per sample (default; ceiling: batch); batch: mqtt.payload = "
        '"batch"; sparkplug: Sparkplug B, one DDATA per read (the subscriber decodes it with '
        "pysparkplug)",
    )
    parser.add_argument(
        "--dialect",
        choices=("rest", "unified"),
        default="rest",
        help="rest: the gateway polls every second (default); unified: it subscribes to a "
        "simulated WinCC Unified runtime, which pushes every change",
    )
    parser.add_argument(
        "--realistic",
        action="store_true",
        help="the simulator lays its plant out as a real project does: every tag a float, "
        "folders typed null, a six-level tree",
    )
    parser.add_argument(
        "--status-page",
        action="store_true",
        help="keep the gateway's status page open during the run (its live stream read "
        "from /events, as a browser does), to measure what an open page costs",
    )
    parser.add_argument(
        "--no-script",
        action="store_true",
        help="skip the reference script's run after each steady and stress run",
    )
    parser.add_argument(
        "--backlog",
        type=int,
        help=f"drain: samples to buffer while the broker is away "
        f"(default {DEFAULT_BACKLOG:,}, at most ten per tag)",
    )
    parser.add_argument(
        "--ref-scale",
        type=float,
        default=1.0,
        help="scale the reference clients' message counts (default 1: 100,000 for mosquitto_pub)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=RESULTS,
        help="folder of the JSON results (default bench/results)",
    )
    return parser


def _check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    for flag, value in (
        ("--tags", args.tags),
        ("--runs", args.runs),
        ("--backlog", args.backlog),
        ("--takeovers", args.takeovers),
    ):
        if value is not None and value < 1:
            parser.error(f"{flag} must be at least 1")
    for flag, number in (
        ("--seconds", args.seconds),
        ("--ref-scale", args.ref_scale),
        ("--minutes", args.minutes),
        ("--sample-every", args.sample_every),
    ):
        if number is not None and not number > 0:
            parser.error(f"{flag} must be positive")
    if args.scenario == "takeover" and (args.payload not in (None, "per-tag") or args.status_page):
        parser.error("takeover: a pair needs --payload per-tag, and keeps no status page open")


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    """SIGINT and SIGTERM unwind, so every child is stopped on the way out. SIGINT too,
    since a shell starts background jobs with it ignored."""
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    """Every scenario asked for, on one broker; 1 if any sample went missing."""
    names = list(ALL) if args.scenario == "all" else [args.scenario]
    summaries: dict[str, Figures] = {}
    lost = 0
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="wincc-bench-") as tmp, reaping() as stack:
        folder = Path(tmp)
        folder.chmod(0o755)  # mosquitto reads its config here, maybe as another user
        _preflight(folder, args, names)
        (folder / "broker").mkdir()
        broker = Broker(folder / "broker")
        stack.callback(broker.stop)
        broker.start()
        print(f"mosquitto on 127.0.0.1:{broker.port}")
        references = _references(names, broker, folder, args.ref_scale)
        windows: dict[str, float | None] = {
            "": references[0].per_s if references else None,
            "_default": references[1].per_s if references else None,
        }
        about = machine()
        for name in names:
            scenario = SCENARIOS[name]
            windowed = name not in ("drain", "takeover")  # their own limits, not windows
            seconds = args.seconds if args.seconds and windowed else scenario.seconds
            if name == "soak":
                seconds = args.minutes * 60
            tags = args.tags or scenario.tags
            backlog = args.backlog or min(DEFAULT_BACKLOG, 10 * tags)
            runs: list[RunResult] = []
            for number in range(1, args.runs + 1):
                print(
                    f"{name} run {number}/{args.runs}: {tags:,} tags, {scenario.summary}",
                    flush=True,
                )
                options = RunOptions(
                    scenario,
                    tags,
                    seconds,
                    _payload(args, name),
                    backlog,
                    number,
                    args.sample_every,
                    args.dialect,
                    args.realistic,
                    args.status_page,
                    args.takeovers,
                )
                run_scenario = run_takeover if name == "takeover" else run_once
                result = run_scenario(options, broker, folder)
                if name in SCRIPTED and not args.no_script:
                    print("  the reference script on the same plant ...", flush=True)
                    add_script(result, measure_script(options, broker, folder))
                runs.append(result)
                print(f"  {_summary(result)}", flush=True)
                failures += _failures(result)
            lost += sum(run.seq_gaps for run in runs)
            figures = median(runs)
            for key in ("samples_per_s", "drain_per_s"):
                rate = figures[key]
                for suffix, reference in windows.items():
                    figures[f"{key}_vs_mosquitto_pub{suffix}"] = (
                        None if rate is None or reference is None else rate / reference
                    )
            summaries[name] = figures
            path = write_json(
                args.out,
                scenario=name,
                settings={
                    "tags": tags,
                    "seconds": seconds,
                    "runs": args.runs,
                    "payload": _payload(args, name),
                    "sweep": scenario.sweep,
                    "dialect": args.dialect,
                    "realistic": args.realistic,
                    "status_page": args.status_page,
                    "script": name in SCRIPTED and not args.no_script,
                    "change_rate": scenario.change_rate,
                    "backlog": backlog if name == "drain" else None,
                    "sample_every_s": args.sample_every if name == "soak" else None,
                    "warm_up_s": warm_up_seconds(seconds) if name == "soak" else None,
                    "rss_band_pct": RSS_BAND_PCT if name == "soak" else None,
                    "takeovers": args.takeovers if name == "takeover" else None,
                    "alarms": "disabled",
                    "qos": 1,
                },
                references=references,
                runs=runs,
                figures=figures,
                about=about,
            )
            print(f"  written to {path}", flush=True)
    print()
    if references:
        print(format_references(references))
        print()
    print(format_table(summaries))
    for line in failures:
        print(f"\nFAIL: {line}")
    if lost:
        print(f"\nFAIL: {lost} published samples never reached the subscriber")
    return 1 if lost or failures else 0


def _references(names: list[str], broker: Broker, folder: Path, scale: float) -> list[Reference]:
    """The plain clients' rates on the broker; none for a takeover alone, which measures
    no rate to compare with theirs."""
    if names == ["takeover"]:
        return []
    print("measuring the reference clients ...", flush=True)
    (folder / "references").mkdir()
    references = measure_references(broker, folder / "references", scale=scale)
    print(format_references(references), flush=True)
    return references


def _failures(result: RunResult) -> list[str]:
    """What makes a run fail besides lost samples: a soak's RSS out of its band, a seq
    used for two different samples."""
    failures = []
    if result.rss_samples_outside_band:
        failures.append(_rss_failure(result))
    if result.reused_seqs:
        failures.append(
            f"takeover run {result.run}: {result.reused_seqs} seqs carried two different samples"
        )
    return failures


def _summary(result: RunResult) -> str:
    """One line on a run, once it is done."""
    rate = f"{result.samples_per_s:,.0f} samples/s"
    if result.takeover_p50_s is not None:
        return (
            f"{result.takeovers} takeovers: without samples p50 {result.takeover_p50_s:.2f} s, "
            f"max {result.takeover_max_s or 0:.2f} s; {rate}, seq gaps {result.seq_gaps}, "
            f"seqs used twice {result.reused_seqs}"
        )
    return (
        f"{rate}, p50 {result.latency_p50_ms or 0:,.0f} ms, p99 "
        f"{result.latency_p99_ms or 0:,.0f} ms, gateway CPU {result.gateway_cpu_pct or 0:.0f} %, "
        f"seq gaps {result.seq_gaps}{_versus(result)}"
    )


def _preflight(folder: Path, args: argparse.Namespace, names: list[str]) -> None:
    """Check that the gateway accepts the config of every payload the runs use."""
    for payload in dict.fromkeys(_payload(args, name) for name in names):
        preflight(folder, payload)


def _payload(args: argparse.Namespace, name: str) -> str:
    """The payload of a scenario's runs: ``--payload``, else the scenario's own."""
    return str(args.payload or SCENARIOS[name].payload)


def _versus(result: RunResult) -> str:
    """The script's rate and CPU after the gateway's, when it ran."""
    if result.script_samples_per_s is None or result.script_cpu_pct is None:
        return ""
    return (
        f"; script {result.script_samples_per_s:,.0f} samples/s, CPU "
        f"{result.script_cpu_pct:.0f} %, seq gaps {result.script_seq_gaps}"
    )


def _rss_failure(result: RunResult) -> str:
    """One line on a soak run whose RSS left the band around its warm-up value."""
    return (
        f"soak run {result.run}: gateway RSS left ±{RSS_BAND_PCT:g} % of its warm-up value "
        f"{result.rss_warm_up_mb or 0:.1f} MB in {result.rss_samples_outside_band} samples "
        f"(min {result.rss_min_mb or 0:.1f}, max {result.rss_max_mb or 0:.1f}, end "
        f"{result.rss_end_mb or 0:.1f} MB, slope {result.rss_slope_mb_per_h or 0:+.1f} MB/h)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Exit codes: 0 done, 1 failed or samples lost, 2 bad arguments, 130 interrupted."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _check(parser, args)
    previous = {
        signum: signal.signal(signum, _interrupt) for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        return run(args)
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("bench: interrupted; every process it started has been stopped", file=sys.stderr)
        return 130
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


if __name__ == "__main__":
    raise SystemExit(main())
