"""The HTTP endpoint for orchestrators and Prometheus: ``GET /health``, ``GET /metrics``;
and for people, the status page (``gateway.status_web``) on the same port.

``/health`` answers 200 only when the gateway really moves data: connected to the broker,
WinCC answering, every scan class polled within three of its intervals, the buffer below
its limit and its disk taking writes. Anything else is 503 with one reason per problem,
so a container runtime, systemd or a load balancer acts on the same verdict an operator
reads.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import orjson
from aiohttp import web
from prometheus_client.exposition import choose_encoder

from gateway import __version__
from gateway.config import HealthSettings
from gateway.errors import GatewayError
from gateway.metrics import GatewayMetrics, Monitored
from gateway.status_page import StatusBoard, StatusSource
from gateway.status_web import StatusPage

if TYPE_CHECKING:
    from gateway.sink import PollStats

log = logging.getLogger(__name__)

STALE_INTERVALS = 3
"""A scan class is unhealthy once this many of its intervals pass without a good poll."""

SHUTDOWN_TIMEOUT = 1.0
"""Seconds open scrapes get to finish when the gateway stops; it must not wait on them."""


class HealthTarget(StatusSource, Protocol):
    """The gateway as the health server sees it: its state, and its metrics registry."""

    @property
    def metrics(self) -> GatewayMetrics:
        """The registry ``/metrics`` serves."""


@dataclass(slots=True, frozen=True)
class Verdict:
    """The answer of ``/health``: the problems found (none: healthy) and the details."""

    reasons: list[str]
    details: dict[str, Any]


def assess(gateway: Monitored, now: float, polling_since: float) -> Verdict:
    """Judge a started gateway at loop time ``now``; ``polling_since`` is when it started.

    Pure, so the rules are tested without servers. A poller that has not succeeded yet is
    measured from ``polling_since``, so a fresh start is not stale at once.
    """
    reasons = []
    session = gateway.session
    connected = session.connected.is_set()
    if not connected:
        reasons.append("mqtt: not connected")
    if gateway.source.state == "down":
        reasons.append("wincc: source down")
    groups: dict[str, Any] = {}
    for poller in gateway.pollers:
        age = _since_success(poller.stats, now, polling_since)
        groups[poller.name] = {"interval_s": poller.interval, "last_success_age_s": round(age, 3)}
        if age > STALE_INTERVALS * poller.interval:
            reasons.append(
                f"wincc: group {poller.name} has not polled successfully for {age:.1f} s"
            )
    alarms = None
    alarm_poller = gateway.alarm_poller
    if alarm_poller is not None:
        age = _since_success(alarm_poller.stats, now, polling_since)
        alarms = {"interval_s": alarm_poller.interval, "last_success_age_s": round(age, 3)}
        if age > STALE_INTERVALS * alarm_poller.interval:
            reasons.append(f"wincc: alarms have not been polled successfully for {age:.1f} s")
    buffer = gateway.buffer
    full = buffer.size_bytes >= buffer.max_size
    if full:
        reasons.append(f"buffer: full ({buffer.depth} messages waiting)")
    if buffer.storage_error is not None:
        reasons.append(f"buffer: cannot store ({buffer.storage_error})")
    details = {
        "version": __version__,
        "mqtt": {"connected": connected, "reconnects": session.reconnects},
        "wincc": {"source": gateway.source.state},
        "groups": groups,
        "alarms": alarms,
        "buffer": {"messages": buffer.depth, "bytes": buffer.size_bytes, "full": full},
    }
    return Verdict(reasons, details)


def _since_success(stats: PollStats, now: float, polling_since: float) -> float:
    last = stats.last_success
    return now - (polling_since if last is None else last)


def split_listen(listen: str) -> tuple[str, int]:
    """``"127.0.0.1:9100"`` or ``"[::]:9100"`` -> host and port (validated by the settings)."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


class HealthServer:
    """Serves ``/health``, ``/metrics`` and the status page on ``[health] listen`` until
    cancelled."""

    def __init__(self, settings: HealthSettings, gateway: HealthTarget) -> None:
        self.settings = settings
        self.gateway = gateway
        self.listening = asyncio.Event()
        self._port: int | None = None
        self._polling_since: float | None = None

    @property
    def port(self) -> int:
        """The bound port (the real one when ``listen`` asks for port 0)."""
        if self._port is None:
            raise RuntimeError("the health server is not listening yet")
        return self._port

    async def run(self) -> None:
        """Listen, serve until cancelled, then close; returns at once when disabled."""
        if not self.settings.enabled:
            return
        host, port = split_listen(self.settings.listen)
        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics)
        page = StatusPage(StatusBoard(self.gateway), self.settings.token)
        page.add_routes(app)
        runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT
        )
        await runner.setup()
        try:
            try:
                await web.TCPSite(runner, host, port).start()
            except OSError as exc:
                raise GatewayError(
                    f"health.listen {self.settings.listen}: cannot listen: {exc.strerror}"
                ) from exc
            self._port = int(runner.addresses[0][1])
            log.info("health, metrics and status page on http://%s:%d", host, self._port)
            if self.settings.token is None and not _loopback(host):
                log.warning(
                    "the status page on %s is open to anyone who reaches it (read-only); "
                    "set health.token to require a token",
                    self.settings.listen,
                )
            self.listening.set()
            async with asyncio.TaskGroup() as group:
                group.create_task(page.run(), name="status-page")
                await self.gateway.started.wait()
                self._polling_since = asyncio.get_running_loop().time()
                await asyncio.Event().wait()  # serve until cancelled
        finally:
            await runner.cleanup()

    async def _health(self, _request: web.Request) -> web.Response:
        now = asyncio.get_running_loop().time()
        if self._polling_since is None:
            # Still resolving tags (WinCC may be away): say so, and what is wrong already.
            verdict = assess(self.gateway, now, now)
            return _json({"status": "starting", "reasons": verdict.reasons, **verdict.details}, 503)
        verdict = assess(self.gateway, now, self._polling_since)
        if verdict.reasons:
            return _json(
                {"status": "unhealthy", "reasons": verdict.reasons, **verdict.details}, 503
            )
        return _json({"status": "ok", **verdict.details}, 200)

    async def _metrics(self, request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        body = encoder(self.gateway.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": content_type})


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _json(body: dict[str, Any], status: int) -> web.Response:
    return web.Response(
        body=orjson.dumps(body),
        status=status,
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )
