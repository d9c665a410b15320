"""``GET /health`` and ``GET /metrics`` of a standby instance of a gateway pair.

A standby polls nothing, so the gateway's own verdict (``gateway.health``) does not apply:
it is healthy while it can take over, that is while it is connected to the broker and
watching the active instance. 200 then, 503 with the reason otherwise, so a container
runtime keeps a waiting standby for healthy. Its ``/metrics`` say that it is the standby,
whether it is connected and how often it took over, so that one scrape job covers both
boxes; the plant's figures are the active instance's.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
from aiohttp import web
from prometheus_client.exposition import choose_encoder

from gateway import __version__
from gateway.config import HealthSettings
from gateway.errors import GatewayError
from gateway.health import split_listen
from gateway.metrics import PairRole, standby_registry
from gateway.mqtt.standby import Standby

log = logging.getLogger(__name__)


@asynccontextmanager
async def standby_health(
    settings: HealthSettings, standby: Standby, pair: PairRole
) -> AsyncIterator[None]:
    """Serve the standby's ``/health`` and ``/metrics`` on ``[health] listen`` for the
    block's duration."""
    if not settings.enabled:
        yield
        return
    instance = pair.instance
    registry = standby_registry(pair, lambda: standby.connected)

    async def health(_request: web.Request) -> web.Response:
        connected = standby.connected
        body = {
            "status": "standby",
            "instance": instance,
            "version": __version__,
            "mqtt": {"connected": connected},
        }
        if not connected:
            body["reasons"] = ["mqtt: not connected to the broker, cannot take over"]
        return web.Response(
            body=orjson.dumps(body),
            status=200 if connected else 503,
            content_type="application/json",
            headers={"Cache-Control": "no-store"},
        )

    async def metrics(request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encoder(registry), headers={"Content-Type": content_type})

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    try:
        host, port = split_listen(settings.listen)
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            raise GatewayError(
                f"health.listen {settings.listen}: cannot listen: {exc.strerror}"
            ) from exc
        log.debug("standby health on http://%s:%d", host, port)
        yield
    finally:
        await runner.cleanup()
