"""The gateway as a process: logging, signals, reload on SIGHUP, the garbage collector's
freezes (gateway.collector), and the exit code. ``gateway.app`` wires the gateway itself."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from pathlib import Path

from gateway import __version__, collector
from gateway.app import Gateway
from gateway.config import GatewaySettings, load_settings
from gateway.errors import ConfigError
from gateway.logs import setup_logging
from gateway.redundancy import Pair
from gateway.wincc.connect import open_client

log = logging.getLogger(__name__)


def _install_signal_handlers(stop: asyncio.Event, reload: Callable[[], None]) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except NotImplementedError:  # Windows: the service wrapper delivers a console event
            signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stop.set))
    if hasattr(signal, "SIGHUP"):
        loop.add_signal_handler(signal.SIGHUP, reload)


async def _reload_on_request(
    gateway: Gateway | Pair, requested: asyncio.Event, path: Path | None
) -> None:
    """Reload the config file whenever SIGHUP asks; a broken file changes nothing."""
    while True:
        await requested.wait()
        requested.clear()
        log.info("reloading the configuration")
        try:
            new = load_settings(path)
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("config reload refused: %s", problem)  # noqa: TRY400
            continue
        await gateway.reload(new)


async def run_gateway(settings: GatewaySettings, config_path: Path | None = None) -> int:
    """``wincc-gateway run``: the gateway until SIGTERM/SIGINT, reloading on SIGHUP."""
    secrets = [
        secret.get_secret_value()
        for secret in (settings.wincc.password, settings.mqtt.password)
        if secret is not None
    ]
    setup_logging(settings.log.level, settings.log.format, secrets)
    log.info("wincc-gateway %s starting", __version__)
    stop = asyncio.Event()
    reload_requested = asyncio.Event()
    _install_signal_handlers(stop, reload_requested.set)
    collector.tune()
    try:
        async with open_client(settings.wincc) as client:
            gateway: Gateway | Pair = (
                Pair(settings, client)
                if settings.redundancy.role == "auto"
                else Gateway(settings, client)
            )
            async with asyncio.TaskGroup() as group:
                reloader = group.create_task(
                    _reload_on_request(gateway, reload_requested, config_path), name="reload"
                )
                freezer = group.create_task(collector.keep_frozen(), name="collector")
                await gateway.run(stop)
                reloader.cancel()
                freezer.cancel()
    except Exception:
        log.exception("the gateway stopped on an unexpected error")
        return 1
    log.info("stopped")
    return 0
