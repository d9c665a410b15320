"""The gateway as a process: logging, signals, reload on SIGHUP, the garbage collector's
tuning, and the exit code. ``gateway.app`` wires the gateway itself."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Callable
from pathlib import Path

from gateway import __version__
from gateway.app import Gateway
from gateway.config import GatewaySettings, load_settings
from gateway.errors import ConfigError
from gateway.logs import setup_logging
from gateway.redundancy import Pair
from gateway.wincc.connect import open_client

log = logging.getLogger(__name__)

COLLECT_AFTER = 200_000
"""Objects allocated and not yet freed between two young collections of the cyclic garbage
collector (Python: 700): above what one poll of 50,000 tags keeps alive at once in batch
mode, so that a poll does not set off collections that only find its own samples in use."""


def _tune_collector() -> None:
    """Polling allocates tens of thousands of short-lived objects a second (the parsed
    answers) beside long-lived per-tag state. With Python's defaults the cyclic collector
    rescans that state over and over: a third of the gateway's CPU at 50,000 tags. What
    is loaded by now is frozen out of the scans, and young collections run less often;
    the hot path makes no reference cycles, so nothing waits longer to be freed."""
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(COLLECT_AFTER, older, oldest)


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
    _tune_collector()
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
                await gateway.run(stop)
                reloader.cancel()
    except Exception:
        log.exception("the gateway stopped on an unexpected error")
        return 1
    log.info("stopped")
    return 0
