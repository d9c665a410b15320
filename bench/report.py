"""Turning runs into figures: the median of several runs, a table, a JSON file."""

from __future__ import annotations

import dataclasses
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from bench.processes import find_tool
from bench.reference import PUB_DEFAULT_INFLIGHT, PUB_INFLIGHT, Reference
from bench.scenarios import RunResult
from bench.soak import RSS_BAND_PCT
from gateway import __version__

Figures = dict[str, Any]

RESULTS = Path(__file__).resolve().parent / "results"
"""Default folder of the JSON files (git-ignored)."""


def median(runs: list[RunResult]) -> Figures:
    """Each figure's median over the runs (figures that do not apply stay None)."""
    rows = [dataclasses.asdict(run) for run in runs]
    out: Figures = {"runs": len(rows)}
    for key, first in rows[0].items():
        values = [row[key] for row in rows if row[key] is not None]
        if key == "run" or isinstance(first, list):  # a series: only in each run
            continue
        if isinstance(first, str):
            out[key] = first
        else:
            out[key] = statistics.median(values) if values else None
    return out


def _percent(ratio: float | None) -> str:
    return "-" if ratio is None else f"{100 * ratio:.1f}"


def _number(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _times(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}x"


def _signed(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:+,.{digits}f}"


_Row = tuple[str, Callable[[Figures], str]]

_ROWS: list[_Row] = [
    ("tags", lambda f: _number(f["tags"])),
    ("measured window, s", lambda f: _number(f["window_s"], 1)),
    ("simulator changes in window", lambda f: _number(f["sim_changes"])),
    ("  plant time the simulator skipped, s", lambda f: _number(f["sim_skipped_s"], 1)),
    ("samples delivered in window", lambda f: _number(f["delivered"])),
    ("samples/s delivered", lambda f: _number(f["samples_per_s"])),
    (
        f"  as % of mosquitto_pub, {PUB_INFLIGHT} in flight",
        lambda f: _percent(f["samples_per_s_vs_mosquitto_pub"]),
    ),
    (
        f"  as % of mosquitto_pub, {PUB_DEFAULT_INFLIGHT} in flight",
        lambda f: _percent(f["samples_per_s_vs_mosquitto_pub_default"]),
    ),
    ("MQTT messages/s", lambda f: _number(f["messages_per_s"])),
    ("duplicates (whole run)", lambda f: _number(f["duplicates"])),
    (
        "seq-gap loss (whole run)",
        lambda f: (
            f"{_number(f['seq_gaps'])} of {_number(f['published'])} "
            f"({_number(f['seq_gap_loss_pct'], 3)} %)"
        ),
    ),
    ("delivered vs changes, % short", lambda f: _number(f["loss_vs_changes_pct"], 1)),
    ("latency p50, ms", lambda f: _number(f["latency_p50_ms"])),
    ("latency p99, ms", lambda f: _number(f["latency_p99_ms"])),
    ("latency max, ms", lambda f: _number(f["latency_max_ms"])),
    ("gateway CPU, % of one core", lambda f: _number(f["gateway_cpu_pct"], 1)),
    ("gateway peak RSS, MB", lambda f: _number(f["gateway_peak_rss_mb"], 1)),
    ("script: samples/s delivered", lambda f: _number(f["script_samples_per_s"])),
    ("script: latency p50, ms", lambda f: _number(f["script_latency_p50_ms"])),
    ("script: latency p99, ms", lambda f: _number(f["script_latency_p99_ms"])),
    ("script: CPU, % of one core", lambda f: _number(f["script_cpu_pct"], 1)),
    ("script: peak RSS, MB", lambda f: _number(f["script_peak_rss_mb"], 1)),
    (
        "script: seq-gap loss (whole run)",
        lambda f: (
            "-"
            if f["script_published"] is None
            else f"{_number(f['script_seq_gaps'])} of {_number(f['script_published'])}"
        ),
    ),
    ("gateway / script: CPU", lambda f: _times(f["cpu_vs_script"])),
    ("gateway / script: delivered", lambda f: _times(f["delivered_vs_script"])),
    ("gateway / script: peak RSS", lambda f: _times(f["rss_vs_script"])),
    ("simulator CPU, %", lambda f: _number(f["simulator_cpu_pct"], 1)),
    ("broker CPU, %", lambda f: _number(f["broker_cpu_pct"], 1)),
    ("buffered at window end", lambda f: _number(f["buffer_rows_end"])),
    ("status page updates received", lambda f: _number(f["page_events"])),
    ("backlog on disk", lambda f: _number(f["backlog"])),
    ("broker back to first delivery, s", lambda f: _number(f["reconnect_s"], 1)),
    ("broker back to backlog delivered, s", lambda f: _number(f["backlog_s"], 1)),
    ("broker back to caught up, s", lambda f: _number(f["drain_s"], 1)),
    ("drain rate, samples/s", lambda f: _number(f["drain_per_s"])),
    (
        f"  as % of mosquitto_pub, {PUB_INFLIGHT} in flight",
        lambda f: _percent(f["drain_per_s_vs_mosquitto_pub"]),
    ),
    ("fresh samples during drain, p50 ms", lambda f: _number(f["fresh_latency_p50_ms"])),
    ("fresh samples during drain, p99 ms", lambda f: _number(f["fresh_latency_p99_ms"])),
    ("soak warm-up, s", lambda f: _number(f["warm_up_s"], 1)),
    ("gateway RSS at warm-up end, MB", lambda f: _number(f["rss_warm_up_mb"], 1)),
    ("gateway RSS at end, MB", lambda f: _number(f["rss_end_mb"], 1)),
    ("gateway RSS after warm-up, min MB", lambda f: _number(f["rss_min_mb"], 1)),
    ("gateway RSS after warm-up, max MB", lambda f: _number(f["rss_max_mb"], 1)),
    ("gateway RSS end vs warm-up, %", lambda f: _signed(f["rss_change_pct"], 1)),
    ("gateway RSS slope after warm-up, MB/h", lambda f: _signed(f["rss_slope_mb_per_h"], 1)),
    (
        f"RSS samples outside ±{RSS_BAND_PCT:g} % (FAIL if any)",
        lambda f: _number(f["rss_samples_outside_band"]),
    ),
    ("gateway CPU after warm-up, mean %", lambda f: _number(f["cpu_after_warm_up_pct"], 1)),
    ("takeovers", lambda f: _number(f["takeovers"])),
    (
        "takeover: last sample to next instance's first, p50 s",
        lambda f: _number(f["takeover_p50_s"], 2),
    ),
    (
        "takeover: last sample to next instance's first, max s",
        lambda f: _number(f["takeover_max_s"], 2),
    ),
    (
        "takeover: SIGKILL to next instance's first, p50 s",
        lambda f: _number(f["kill_to_first_p50_s"], 2),
    ),
    (
        "takeover: SIGKILL to next instance's first, max s",
        lambda f: _number(f["kill_to_first_max_s"], 2),
    ),
    ("seqs that carried two samples (FAIL if any)", lambda f: _number(f["reused_seqs"])),
    ("gateway exit code on SIGTERM", lambda f: _number(f["gateway_exit"])),
]


def format_references(references: list[Reference]) -> str:
    """The reference clients' rates, one line each."""
    lines = [
        f"  {ref.description:<44} {ref.per_s:>8,.0f} msg/s  ({ref.messages:,} in "
        f"{ref.seconds:.2f} s; subscriber got {ref.received:,} at {ref.received_per_s:,.0f}/s)"
        for ref in references
    ]
    return "\n".join(["reference publish rates on the same broker (QoS 1, MQTT 5):", *lines])


def format_table(figures: dict[str, Figures]) -> str:
    """Rows of figures, one column per scenario (medians when there were several runs)."""
    names = list(figures)
    cells = [[fmt(figures[name]) for name in names] for _, fmt in _ROWS]
    label_width = max(len(label) for label, _ in _ROWS)
    widths = [max(len(name), *(len(row[i]) for row in cells)) for i, name in enumerate(names)]
    runs = {f["runs"] for f in figures.values()}
    title = "median of " + "/".join(str(r) for r in sorted(runs)) + " runs" if runs != {1} else ""
    header = f"{title:<{label_width}}  " + "  ".join(
        f"{name:>{w}}" for name, w in zip(names, widths, strict=True)
    )
    lines = [header, "-" * len(header)]
    for (label, _), row in zip(_ROWS, cells, strict=True):
        if all(cell == "-" for cell in row):
            continue
        lines.append(
            f"{label:<{label_width}}  "
            + "  ".join(f"{cell:>{w}}" for cell, w in zip(row, widths, strict=True))
        )
    return "\n".join(lines)


def _tool_version(name: str) -> str:
    """First line of ``mosquitto -h`` and the like, which names the version."""
    result = subprocess.run(
        [find_tool(name), "-h"], capture_output=True, text=True, timeout=10, check=False
    )
    return (
        (result.stdout or result.stderr).splitlines()[0] if (result.stdout or result.stderr) else ""
    )


def _git_commit() -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
            cwd=Path(__file__).resolve().parent,
        )
    except OSError:
        return None
    return result.stdout.strip() or None


def machine() -> dict[str, Any]:
    """Where the figures were taken, for reading them later."""
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "gateway": __version__,
        "git_commit": _git_commit(),
        "mosquitto": _tool_version("mosquitto"),
    }


def write_json(
    folder: Path,
    *,
    scenario: str,
    settings: dict[str, Any],
    references: list[Reference],
    runs: list[RunResult],
    figures: Figures,
    about: dict[str, Any],
) -> Path:
    """``<folder>/<scenario>-<timestamp>.json`` with every run, the median and the references."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = folder / f"{scenario}-{stamp}.json"
    document = {
        "scenario": scenario,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "settings": settings,
        "machine": about,
        "references": [{**dataclasses.asdict(ref), "per_s": ref.per_s} for ref in references],
        "median": figures,
        "runs": [dataclasses.asdict(run) for run in runs],
    }
    path.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
    return path
