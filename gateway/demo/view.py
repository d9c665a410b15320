"""The demo's terminal view: what the subscriber saw, as a live table or as summary lines."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import orjson
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

REFRESH_PER_SECOND = 4
RATE_WINDOW = 5.0  # seconds the message rate is averaged over
SUMMARY_INTERVAL = 3.0  # seconds between summary lines when stdout is no interactive terminal
MAX_TAG_ROWS = 25
MAX_ALARM_ROWS = 10


@dataclass(slots=True)
class TagRow:
    """The latest sample of one tag as it arrived on the broker."""

    value: object
    good: bool
    quality: str
    ts: str
    seq: int | None


class DemoView:
    """What the subscriber saw, folded into the numbers and tables the view shows; no I/O."""

    def __init__(self, prefix: str, started: float) -> None:
        self.started = started
        self.tags: dict[str, TagRow] = {}  # oldest change first, latest last
        self.alarms: dict[str, dict[str, Any]] = {}
        self.status: dict[str, Any] = {}
        self.last_result: dict[str, Any] | None = None
        self.messages = 0
        self.samples = 0
        self.not_good = 0
        self.alarm_events = 0
        self.unreadable = 0
        self.first_sample_after: float | None = None
        self.got_samples = asyncio.Event()
        self._prefix = prefix + "/"
        self._arrivals: deque[float] = deque()

    def handle(self, topic: str, payload: bytes, now: float) -> None:
        """Take one message from the broker, arrived at loop time ``now``."""
        self.messages += 1
        self._arrivals.append(now)
        self._forget_before(now - RATE_WINDOW)
        kind, _, path = topic.removeprefix(self._prefix).partition("/")
        if kind == "tags" and path:
            self._sample(path, payload, now)
        elif kind == "alarms" and path == "events":
            self.alarm_events += 1
        elif kind == "alarms" and path:
            self._alarm(unquote(path), payload)
        elif kind == "status" and not path:
            self.status = self._json(payload) or {}
        elif kind == "cmd" and path == "result":
            self.last_result = self._json(payload)

    def rate(self, now: float) -> float:
        """Messages a second over the last ``RATE_WINDOW`` seconds (or since the start)."""
        self._forget_before(now - RATE_WINDOW)
        window = min(RATE_WINDOW, now - self.started)
        return len(self._arrivals) / window if window > 0 else 0.0

    def first_sample_line(self) -> str:
        """The line announcing that data flows, with how long it took from the start."""
        name, row = next(reversed(self.tags.items()))
        return (
            f"first samples after {self.first_sample_after or 0.0:.2f}s: "
            f"{name} = {_show_value(row.value)} ({row.quality})"
        )

    def summary(self, now: float) -> str:
        """One line with the status, the traffic, the tags and the alarms."""
        return (
            f"[{now - self.started:6.1f}s] {self._status_text()} | "
            f"{self.messages} messages, {self.rate(now):.1f} msg/s | "
            f"{self.samples} samples of {len(self.tags)} tags, {self.not_good} not good | "
            f"{len(self.alarms)} alarms active, {self.alarm_events} alarm events"
        )

    def render(self, now: float, height: int) -> RenderableType:
        """The live view, fitted into ``height`` lines as far as the tables allow."""
        alarm_rows = min(len(self.alarms), MAX_ALARM_ROWS)
        tag_rows = max(3, min(MAX_TAG_ROWS, height - alarm_rows - 14))
        return Group(
            Panel(self._header(now), title="wincc-gateway demo", title_align="left"),
            self._tag_table(tag_rows),
            self._alarm_table(),
        )

    def _forget_before(self, limit: float) -> None:
        arrivals = self._arrivals
        while arrivals and arrivals[0] < limit:
            arrivals.popleft()

    def _json(self, payload: bytes) -> dict[str, Any] | None:
        """The payload as a JSON object; anything else is counted, not shown."""
        try:
            data = orjson.loads(payload)
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            self.unreadable += 1
            return None
        return data

    def _sample(self, path: str, payload: bytes, now: float) -> None:
        data = self._json(payload)
        if data is None:
            return
        name = ".".join(unquote(level) for level in path.split("/"))
        good = data.get("good") is True
        quality = "good" if good else str(data.get("quality_text", data.get("quality")))
        seq = data.get("seq")
        self.tags.pop(name, None)  # re-inserted at the end: the latest change is last
        self.tags[name] = TagRow(
            data.get("value"),
            good,
            quality,
            str(data.get("ts", "")),
            seq if isinstance(seq, int) else None,
        )
        self.samples += 1
        if not good:
            self.not_good += 1
        if self.first_sample_after is None:
            self.first_sample_after = now - self.started
            self.got_samples.set()

    def _alarm(self, alarm_id: str, payload: bytes) -> None:
        if not payload:  # an empty retained message clears the alarm
            self.alarms.pop(alarm_id, None)
            return
        data = self._json(payload)
        if data is not None:
            self.alarms[alarm_id] = data

    def _status_text(self) -> str:
        state = self.status.get("state", "not seen yet")
        source = self.status.get("source")
        return f"gateway {state}" + (f" (WinCC {source})" if source else "")

    def _header(self, now: float) -> Text:
        text = Text()
        state = self.status.get("state")
        text.append(self._status_text(), style="green" if state == "online" else "yellow")
        text.append(
            f"   {self.rate(now):7.1f} msg/s   {self.messages} messages   "
            f"{self.samples} samples of {len(self.tags)} tags ({self.not_good} not good)   "
            f"{len(self.alarms)} alarms   up {now - self.started:.0f}s"
        )
        result = self.last_result
        if result is not None:
            outcome = "ok" if result.get("ok") else f"refused: {result.get('error')}"
            target = result.get("tag") or result.get("alarm") or ""
            text.append(f"\nlast command {result.get('id')!s}: {target} {outcome}")
        return text

    def _tag_table(self, rows: int) -> Table:
        table = Table(title="latest changes", title_justify="left", expand=True)
        table.add_column("tag", overflow="fold")
        table.add_column("value", justify="right")
        table.add_column("quality")
        table.add_column("ts (UTC)")
        table.add_column("seq", justify="right")
        latest = list(reversed(self.tags.items()))[:rows]
        for name, row in latest:
            table.add_row(
                name,
                _show_value(row.value),
                Text(row.quality, style=_quality_style(row)),
                row.ts.partition("T")[2] or row.ts,
                "" if row.seq is None else str(row.seq),
            )
        return table

    def _alarm_table(self) -> Table:
        table = Table(
            title=f"active alarms ({len(self.alarms)})", title_justify="left", expand=True
        )
        table.add_column("id")
        table.add_column("prio", justify="right")
        table.add_column("text", overflow="fold")
        table.add_column("state")
        table.add_column("acked")
        ordered = sorted(
            self.alarms.values(),
            key=lambda alarm: (-_int(alarm.get("priority")), str(alarm.get("came_at"))),
        )
        for alarm in ordered[:MAX_ALARM_ROWS]:
            state = str(alarm.get("state", ""))
            table.add_row(
                str(alarm.get("id", "")),
                str(alarm.get("priority", "")),
                str(alarm.get("text", "")),
                Text(state, style="red" if state == "came" else "dim"),
                "yes" if alarm.get("acked") else "no",
            )
        return table


def _int(value: object) -> int:
    return value if isinstance(value, int) else 0


def _show_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    return "null" if value is None else str(value)


def _quality_style(row: TagRow) -> str:
    if row.good:
        return "green"
    return "yellow" if row.quality.startswith("uncertain") else "red"


async def live_view(view: DemoView, console: Console, *, reserved: int) -> None:
    """Redraw the terminal view a few times a second, from the event loop (no thread).

    The view leaves ``reserved`` lines of the terminal to the banner above it, so the
    commands to copy stay on screen.
    """
    loop = asyncio.get_running_loop()

    def frame() -> RenderableType:
        return view.render(loop.time(), console.size.height - reserved)

    with Live(frame(), console=console, auto_refresh=False) as live:
        while True:
            await asyncio.sleep(1.0 / REFRESH_PER_SECOND)
            live.update(frame(), refresh=True)


async def summary_lines(view: DemoView, console: Console) -> None:
    """Without an interactive terminal: a line as soon as data flows, then one every few s."""
    loop = asyncio.get_running_loop()
    await view.got_samples.wait()
    say(console, view.first_sample_line())
    while True:
        await asyncio.sleep(SUMMARY_INTERVAL)
        say(console, view.summary(loop.time()))


def say(console: Console, line: str) -> None:
    """Print a line as is: no markup, no highlighting, never wrapped (commands stay whole)."""
    console.print(Text(line), soft_wrap=True)
