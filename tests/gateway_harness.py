"""Runs the gateway for end-to-end tests: in-process, or as a real `wincc-gateway run`."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from gateway.app import Gateway
from gateway.config import GatewaySettings
from gateway.core.topics import escape_level
from gateway.polling import PollObserver
from gateway.simulator.classic import ALARM_FILTER as CLASSIC_ALARM_FILTER
from gateway.simulator.classic import BASE_PATH as CLASSIC_PATH
from gateway.simulator.server import Simulator
from gateway.wincc.connect import open_client
from tests.conftest import Mosquitto, TlsFiles

PREFIX = "wincc/test"


def settings_for(
    sim: Simulator,
    broker: Mosquitto,
    tls: TlsFiles,
    tmp_path: Path,
    *,
    poll: list[dict[str, Any]] | None = None,
    **sections: dict[str, Any],
) -> dict[str, Any]:
    """A config (as TOML-shaped data) wiring the simulator and the broker together."""
    config: dict[str, Any] = {
        "wincc": {
            "url": sim.url,
            "username": "demo",
            "password": "demo",
            "ca_file": str(tls.ca_file),
            "timeout": "2s",
        },
        "poll": poll
        if poll is not None
        else [{"name": "fast", "interval": "200ms", "tags": ["System1.Area1.**"]}],
        "alarms": {"interval": "200ms"},
        "mqtt": {"url": broker.url, "topic_prefix": PREFIX, "client_id": "gw-test", "qos": 1},
        "buffer": {"path": str(tmp_path / "buffer.db")},
        "health": {"enabled": False},
    }
    if sim.options.dialect == "classic":
        config["wincc"].update(
            dialect="classic", url=sim.url + CLASSIC_PATH, alarm_filter=CLASSIC_ALARM_FILTER
        )
    elif sim.options.dialect == "unified":
        config["wincc"].update(dialect="unified", url=sim.url + sim.options.graphql_path)
    for section, values in sections.items():
        config.setdefault(section, {}).update(values)
    if broker.tls:
        config["mqtt"].update(
            ca_file=str(tls.ca_file), cert_file=str(tls.client_cert), key_file=str(tls.client_key)
        )
    return config


def alarm_id_of(sim: Simulator, plant_id: str) -> str:
    """The id the gateway publishes a plant alarm under: WinCC Unified names its alarms
    ``System::Tag:Alarm`` with an instance, the other dialects by the plant's id."""
    if sim.options.dialect == "unified":
        return f"{sim.unified.data.alarm_name(plant_id)}:{plant_id}"
    return plant_id


def alarm_topic(sim: Simulator, plant_id: str, kind: str = "alarms") -> str:
    """The topic of a plant alarm's state (``alarms``) or of its acknowledgement
    (``cmd/ack``)."""
    return f"{PREFIX}/{kind}/{escape_level(alarm_id_of(sim, plant_id))}"


def one_tag_per_request(
    sim: Simulator, broker: Mosquitto, tls: TlsFiles, tmp_path: Path, tags: list[str]
) -> dict[str, Any]:
    """A config polling ``tags`` every 2 s, one tag per bulk read and one read at a time,
    alarms off: each tag is its own chunk, read in order (WinCC Unified polled too)."""
    wincc: dict[str, Any] = {"batch_size": 1, "max_concurrency": 1}
    if sim.options.dialect == "unified":
        wincc["mode"] = "poll"
    return settings_for(
        sim,
        broker,
        tls,
        tmp_path,
        poll=[{"name": "slow", "interval": "2s", "tags": tags}],
        wincc=wincc,
        alarms={"enabled": False},
    )


@contextlib.asynccontextmanager
async def running_gateway(
    config: dict[str, Any], observe: PollObserver | None = None, *, wait: bool = True
) -> AsyncIterator[Gateway]:
    """The gateway in this process, started and polling, stopped cleanly afterwards.

    With ``wait=False`` the block runs as soon as the gateway is on its way, before the
    tag lists are resolved.
    """
    settings = GatewaySettings(**config)
    stop = asyncio.Event()
    async with open_client(settings.wincc) as client:
        gateway = Gateway(settings, client, observe=observe)
        task = asyncio.create_task(gateway.run(stop))
        if not wait:
            try:
                yield gateway
            finally:
                stop.set()
                async with asyncio.timeout(20):
                    await task
            return
        started = asyncio.create_task(gateway.started.wait())
        await asyncio.wait({task, started}, timeout=15, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            started.cancel()
            task.result()
        assert gateway.started.is_set(), "the gateway did not start polling in 15 s"
        async with asyncio.timeout(15):  # subscribed to its command topics
            await gateway.session.connected.wait()
        try:
            yield gateway
        finally:
            stop.set()
            async with asyncio.timeout(20):
                await task


def toml_of(config: dict[str, Any]) -> str:
    """Minimal TOML writer for the shapes ``settings_for`` makes."""

    def value(item: Any) -> str:
        if isinstance(item, bool):
            return "true" if item else "false"
        if isinstance(item, int | float):
            return repr(item)
        if isinstance(item, list):
            return "[" + ", ".join(value(x) for x in item) + "]"
        return '"' + str(item).replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = []
    for section, body in config.items():
        if section == "poll":
            for group in body:
                lines.append("[[poll]]")
                lines += [f"{key} = {value(v)}" for key, v in group.items()]
            continue
        lines.append(f"[{section}]")
        lines += [f"{key} = {value(v)}" for key, v in body.items()]
    return "\n".join(lines) + "\n"


class GatewayProcess:
    """`wincc-gateway run` as a child process, for signals and crashes; its log is read as
    it is written, so a test can await a line."""

    def __init__(self, config: dict[str, Any], folder: Path) -> None:
        self.config_file = folder / "gateway.toml"
        self.config_file.write_text(toml_of(config), encoding="utf-8")
        self.process: asyncio.subprocess.Process | None = None
        self.lines: list[str] = []
        self._logged = asyncio.Condition()
        self._reader: asyncio.Task[None] | None = None

    @property
    def stderr(self) -> bytes:
        """Everything the gateway logged so far."""
        return "".join(self.lines).encode()

    async def start(self) -> None:
        """Start it; the caller awaits the evidence it needs (e.g. the status online)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway",
            "run",
            "--config",
            str(self.config_file),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        self._reader = asyncio.create_task(self._read(self.process))

    async def _read(self, process: asyncio.subprocess.Process) -> None:
        assert process.stderr is not None
        while line := await process.stderr.readline():
            async with self._logged:
                self.lines.append(line.decode())
                self._logged.notify_all()

    async def wait_for_log(self, text: str, timeout: float = 15) -> None:
        """Wait until a log line contains ``text``."""
        async with asyncio.timeout(timeout), self._logged:
            await self._logged.wait_for(lambda: any(text in line for line in self.lines))

    def send(self, sig: signal.Signals) -> None:
        """Send a signal (e.g. SIGHUP) without waiting for anything."""
        assert self.process is not None
        self.process.send_signal(sig)

    async def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        """Send ``sig`` and return the exit code once the process and its log are done."""
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(sig)
        code = await asyncio.wait_for(self.process.wait(), 30)
        if self._reader is not None:
            await asyncio.wait_for(self._reader, 10)
        return code
