"""``wincc-gateway demo``: simulator, embedded broker and gateway on loopback, watched live.

The demo needs no config and no outside services, so anyone can see the product work with
one command. Everything runs in this process: the WinCC simulator over plain HTTP on
loopback, amqtt as the MQTT 3.1.1 broker, the real gateway, and a subscriber that
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource
from rich.console import Console
from rich.logging import RichHandler

from gateway.app import Gateway
from gateway.config import (
    AlarmSettings,
    BufferSettings,
    CommandSettings,
    GatewaySettings,
    HealthSettings,
    PollGroup,
)
from gateway.core.topics import tag_path
from gateway.demo.broker import embedded_broker, feed, subscriber
from gateway.demo.view import DemoView, live_view, say, summary_lines
from gateway.logs import TextFormatter
from gateway.mqtt_settings import MqttSettings
from gateway.simulator.plant import ROOT, alarm_capacity
from gateway.simulator.server import Simulator, SimulatorOptions
from gateway.wincc.base import WinCCClient
from gateway.wincc.connect import open_client
from gateway.wincc.resolve import resolve_tags
from gateway.wincc.settings import RestSettings, WinCCSettings

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
        health=HealthSettings(listen=f"{HOST}:0"),  # the status page, on a free port
    )


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
    say(console, f"demo stopped: {view.summary(loop.time())}")
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
        embedded_broker(HOST, broker_port) as port,
        subscriber(HOST, port, PREFIX) as watcher,
    ):
        wincc = RestSettings(
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
                say(console, line)
            display = (
                live_view(view, console, reserved=len(banner) + START_LOG_LINES)
                if console.is_interactive
                else summary_lines(view, console)
            )
            gateway = Gateway(settings, client)
            async with asyncio.TaskGroup() as group:
                feeding = group.create_task(feed(watcher, view), name="demo-feed")
                shown = group.create_task(display, name="demo-view")
                told = group.create_task(_tell_status_page(gateway, console), name="demo-page")
                await gateway.run(stop)
                feeding.cancel()
                shown.cancel()
                told.cancel()


async def _tell_status_page(gateway: Gateway, console: Console) -> None:
    """Print where the status page is, once it listens; open nothing."""
    await gateway.health.listening.wait()
    say(console, f"Status page: http://{HOST}:{gateway.health.port}/")
