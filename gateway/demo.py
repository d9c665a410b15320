"""``wincc-gateway demo``: simulator, embedded broker and gateway on loopback, watched live.

The demo needs no config and no outside services, so anyone can see the product work with
one command. Everything runs in this process: the WinCC simulator over plain HTTP on
loopback, amqtt as the MQTT 3.1.1 broker, the real gateway, and an aiomqtt subscriber that
feeds a terminal view, or summary lines when stdout is no interactive terminal (CI logs,
``| tee``, ``TTY_INTERACTIVE=0``). Ctrl-C or SIGTERM stops them in reverse order: gateway,
subscriber, broker, simulator.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import sys
import tempfile
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import aiomqtt
import orjson
from amqtt.broker import Broker
from amqtt.contexts import BrokerConfig, ListenerConfig
from amqtt.errors import BrokerError
from pydantic import SecretStr
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.logging import RichHandler
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from gateway.app import Gateway
from gateway.config import (
    AlarmSettings,
    BufferSettings,
    CommandSettings,
    GatewaySettings,
    HealthSettings,
    MqttSettings,
    PollGroup,
    WinCCSettings,
)
from gateway.core.topics import tag_path
from gateway.errors import GatewayError
from gateway.logs import TextFormatter
from gateway.simulator.plant import ROOT, alarm_capacity
from gateway.simulator.server import Simulator, SimulatorOptions
from gateway.wincc.base import WinCCClient
from gateway.wincc.connect import open_client
from gateway.wincc.resolve import resolve_tags

HOST = "127.0.0.1"
PREFIX = "wincc/demo"
DEMO_USER = "demo"
DEMO_PASSWORD = "demo"  # noqa: S105 - the documented demo credentials of SPEC.md
DEMO_ALARMS = 20
CHANGE_RATE = 0.2  # share of tags changing per second: enough to keep the view moving
BAD_QUALITY = 0.02  # share of changes with a not-good quality, so the flagging shows
FAST_INTERVAL = 1.0
SLOW_INTERVAL = 5.0
WRITABLE = f"{ROOT}.**.Setpoint"

REFRESH_PER_SECOND = 4
RATE_WINDOW = 5.0  # seconds the message rate is averaged over
SUMMARY_INTERVAL = 3.0  # seconds between summary lines when stdout is no interactive terminal
MAX_TAG_ROWS = 25
MAX_ALARM_ROWS = 10
START_LOG_LINES = 4  # the gateway's log lines at start, printed above the live view
QUIET_LOGGERS = ("amqtt", "transitions", "aiohttp.access", "mqtt")

EXIT_OK = 0
EXIT_BAD_ARGUMENTS = 2


class _DemoSettings(GatewaySettings):
    """The demo's settings come from its code only.

    ``GATEWAY_*`` variables of the user's shell (meant for ``wincc-gateway run``) would
    otherwise override them and point the demo at a real broker or server.
    """

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only the values passed in; no environment, no dotenv, no secret files."""
        return (init_settings,)


@dataclass(slots=True, frozen=True)
class DemoPlan:
    """What browsing the simulator decided: scan classes that do not overlap, a write target."""

    groups: list[PollGroup]
    setpoint: str | None


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


def banner_lines(
    *, sim_url: str, broker_port: int, plan: DemoPlan, tags: int, alarms: int
) -> list[str]:
    """What runs where, and how to watch and command it from another shell."""
    groups = " | ".join(
        f"{group.name} every {group.interval:g}s: {', '.join(group.tags)}" for group in plan.groups
    )
    lines = [
        "wincc-gateway demo: WinCC simulator, MQTT broker and gateway, on loopback in this process",
        f"  WinCC simulator  {sim_url}  (plain HTTP, loopback only)  "
        f"user {DEMO_USER}, password {DEMO_PASSWORD}, {tags} tags, {alarms} alarms",
        f"  MQTT broker      mqtt://{HOST}:{broker_port}  (amqtt, MQTT 3.1.1, anonymous)",
        f"  gateway          topics under {PREFIX}/; polls {groups}",
        "Watch what the gateway publishes, from another shell:",
        f"  mosquitto_sub -h {HOST} -p {broker_port} -V mqttv311 -t '{PREFIX}/#' -v",
    ]
    if plan.setpoint is None:
        lines.append(
            "No writable setpoint among so few tags; start with more --tags to try writes."
        )
    else:
        # QoS 1: mosquitto_pub then waits for the broker's PUBACK before it disconnects.
        # amqtt 0.12 reads a new client's packets only after sending it retained messages,
        # and loses a QoS 0 publish whose sender has already gone by then.
        lines += [
            f"Write a setpoint (the answer comes on {PREFIX}/cmd/result):",
            f"  mosquitto_pub -h {HOST} -p {broker_port} -V mqttv311 -q 1 "
            f"-t '{PREFIX}/cmd/write/{tag_path(plan.setpoint)}' "
            """-m '{"value": 42, "id": "demo-1"}'""",
        ]
    lines.append("Ctrl-C stops everything.")
    return lines


async def plan_demo(client: WinCCClient) -> DemoPlan:
    """Scan classes from the simulator's top folders: the first fast, the rest slow.

    Patterns that do not overlap keep the gateway from polling a tag twice (and warning).
    """
    patterns = [
        f"{child.name}.**" if child.has_children else child.name
        for child in await client.browse(ROOT)
    ]
    groups = [PollGroup(name="fast", interval=FAST_INTERVAL, tags=patterns[:1])]
    if len(patterns) > 1:
        groups.append(PollGroup(name="slow", interval=SLOW_INTERVAL, tags=patterns[1:]))
    found = await resolve_tags(client, [f"{patterns[0]}.Setpoint"])
    setpoints = [tag.name for tag in found.tags if tag.writable]
    return DemoPlan(groups, setpoints[0] if setpoints else None)


def demo_settings(
    wincc: WinCCSettings, plan: DemoPlan, broker_port: int, folder: Path
) -> GatewaySettings:
    """The gateway's settings for the demo, untouched by the environment."""
    return _DemoSettings(
        wincc=wincc,
        poll=plan.groups,
        alarms=AlarmSettings(interval=1.0),
        mqtt=MqttSettings(
            url=f"mqtt://{HOST}:{broker_port}",
            client_id="wincc-demo-gateway",
            topic_prefix=PREFIX,
            protocol=311,  # amqtt speaks MQTT 3.1.1 only
        ),
        commands=CommandSettings(writable=[WRITABLE], acknowledge=["**"]),
        buffer=BufferSettings(path=folder / "buffer.db"),
        health=HealthSettings(enabled=False),
    )


@contextlib.asynccontextmanager
async def embedded_broker(port: int) -> AsyncIterator[int]:
    """amqtt on loopback, anonymous, without plugins that write files; yields its port."""
    config = BrokerConfig(
        listeners={"default": ListenerConfig(bind=f"{HOST}:{port}")},
        plugins={"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    )
    broker = Broker(config)
    broker_log = logging.getLogger("amqtt.broker")
    level = broker_log.level
    broker_log.setLevel(logging.CRITICAL)  # a failed start is reported below, once, in one line
    try:
        await broker.start()
    except BrokerError as exc:
        raise GatewayError(
            f"the embedded broker cannot listen on {HOST}:{port}: {exc.__cause__ or exc}"
        ) from exc
    finally:
        broker_log.setLevel(level)
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()

    def one_line_for_dropped_clients(
        loop: asyncio.AbstractEventLoop, context: dict[str, Any]
    ) -> None:
        # amqtt lets a client connection that breaks off (a subscriber killed, a stop
        # while a client is connecting) escape to asyncio, which prints a traceback.
        if context.get("message") == "Unhandled exception in client_connected_cb":
            broker_log.debug("a client connection ended: %r", context.get("exception"))
        elif previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(one_line_for_dropped_clients)
    try:
        # amqtt does not report the port it bound for port 0; its listener's server knows.
        yield int(broker._servers["default"].instance.sockets[0].getsockname()[1])
    finally:
        await broker.shutdown()
        loop.set_exception_handler(previous)


@contextlib.asynccontextmanager
async def _subscriber(port: int) -> AsyncIterator[aiomqtt.Client]:
    """A client of the embedded broker subscribed to everything under the demo's prefix."""
    client = aiomqtt.Client(
        HOST, port, identifier="wincc-demo-view", protocol=aiomqtt.ProtocolVersion.V311
    )
    async with client:
        await client.subscribe(f"{PREFIX}/#", qos=0)
        yield client


async def _feed(client: aiomqtt.Client, view: DemoView) -> None:
    """Hand every message the subscriber receives to the view."""
    loop = asyncio.get_running_loop()
    async for message in client.messages:
        payload = message.payload
        data = bytes(payload) if isinstance(payload, bytes | bytearray) else b""
        view.handle(message.topic.value, data, loop.time())


async def _live_view(view: DemoView, console: Console, *, reserved: int) -> None:
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


async def _summary_lines(view: DemoView, console: Console) -> None:
    """Without an interactive terminal: a line as soon as data flows, then one every few s."""
    loop = asyncio.get_running_loop()
    await view.got_samples.wait()
    _say(console, view.first_sample_line())
    while True:
        await asyncio.sleep(SUMMARY_INTERVAL)
        _say(console, view.summary(loop.time()))


def _say(console: Console, line: str) -> None:
    """Print a line as is: no markup, no highlighting, never wrapped (commands stay whole)."""
    console.print(Text(line), soft_wrap=True)


@contextlib.contextmanager
def _stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    """SIGINT and SIGTERM set ``stop``, so the parts shut down in order, not mid-flight."""
    loop = asyncio.get_running_loop()
    undo: list[Callable[[], object]] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
            undo.append(functools.partial(loop.remove_signal_handler, sig))
        except NotImplementedError:  # Windows: no loop signal handlers
            previous = signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stop.set))
            undo.append(functools.partial(signal.signal, sig, previous))
    try:
        yield
    finally:
        for step in reversed(undo):
            step()


@contextlib.contextmanager
def _demo_logging(console: Console) -> Iterator[None]:
    """Gateway log lines above the live view (or on stderr); the libraries' chatter off."""
    handler: logging.Handler
    if console.is_interactive:
        handler = RichHandler(console=console, show_path=False)
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    quiet = [logging.getLogger(name) for name in QUIET_LOGGERS]
    saved = [(logger, logger.level) for logger in (root, *quiet)]
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    for logger in quiet:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        root.removeHandler(handler)
        for logger, level in saved:
            logger.setLevel(level)


def _argument_problems(tags: int, broker_port: int, duration: float | None) -> list[str]:
    problems = []
    if tags < 1:
        problems.append("--tags: the simulator needs at least 1 tag")
    if not 0 <= broker_port <= 65535:
        problems.append("--broker-port: a port is 0 (any free one) to 65535")
    if duration is not None and duration <= 0:
        problems.append("duration: must be positive")
    return problems


async def run_demo(
    tags: int,
    broker_port: int = 0,
    *,
    duration: float | None = None,
    console: Console | None = None,
) -> int:
    """Run the demo until Ctrl-C, SIGTERM or ``duration`` seconds; returns the exit code."""
    problems = _argument_problems(tags, broker_port, duration)
    if problems:
        sys.stderr.writelines(f"demo: {problem}\n" for problem in problems)
        return EXIT_BAD_ARGUMENTS
    console = console or Console()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    view = DemoView(PREFIX, loop.time())
    timer = None if duration is None else loop.call_later(duration, stop.set)
    try:
        with (
            _demo_logging(console),
            _stop_on_signals(stop),
            tempfile.TemporaryDirectory(prefix="wincc-demo-") as folder,
        ):
            await _run(
                tags=tags,
                broker_port=broker_port,
                stop=stop,
                view=view,
                console=console,
                folder=Path(folder),
            )
    finally:
        if timer is not None:
            timer.cancel()
    _say(console, f"demo stopped: {view.summary(loop.time())}")
    return EXIT_OK


async def _run(
    *,
    tags: int,
    broker_port: int,
    stop: asyncio.Event,
    view: DemoView,
    console: Console,
    folder: Path,
) -> None:
    """Start simulator, broker, subscriber and gateway; stop them in reverse order."""
    alarms = min(DEMO_ALARMS, alarm_capacity(tags))
    options = SimulatorOptions(
        host=HOST,
        port=0,
        tags=tags,
        alarms=alarms,
        username=DEMO_USER,
        password=DEMO_PASSWORD,
        change_rate=CHANGE_RATE,
        bad_quality=BAD_QUALITY,
    )
    async with (
        Simulator(options) as sim,
        embedded_broker(broker_port) as port,
        _subscriber(port) as subscriber,
    ):
        wincc = WinCCSettings(
            url=sim.url,
            username=DEMO_USER,
            password=SecretStr(DEMO_PASSWORD),
            allow_insecure_http=True,  # plain HTTP on loopback only: nothing leaves the host
        )
        async with open_client(wincc) as client:
            plan = await plan_demo(client)
            settings = demo_settings(wincc, plan, port, folder)
            banner = banner_lines(
                sim_url=sim.url, broker_port=port, plan=plan, tags=tags, alarms=alarms
            )
            for line in banner:
                _say(console, line)
            display = (
                _live_view(view, console, reserved=len(banner) + START_LOG_LINES)
                if console.is_interactive
                else _summary_lines(view, console)
            )
            async with asyncio.TaskGroup() as group:
                feed = group.create_task(_feed(subscriber, view), name="demo-feed")
                shown = group.create_task(display, name="demo-view")
                await Gateway(settings, client).run(stop)
                feed.cancel()
                shown.cancel()
