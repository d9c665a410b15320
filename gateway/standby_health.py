"""``GET /health`` of a standby instance of a gateway pair.

A standby polls nothing, so the gateway's own verdict (``gateway.health``) does not apply:
it is healthy while it can take over, that is while it is connected to the broker and
watching the active instance. 200 then, 503 with the reason otherwise, so a container
runtime keeps a waiting standby for healthy. It serves no ``/metrics``: the active
instance's are the pair's.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
from aiohttp import web

from gateway import __version__
from gateway.config import HealthSettings
from gateway.errors import GatewayError
from gateway.health import split_listen
from gateway.mqtt.standby import Standby

log = logging.getLogger(__name__)


@asynccontextmanager
async def standby_health(
    settings: HealthSettings, standby: Standby, instance: str
) -> AsyncIterator[None]:
    """Serve the standby's ``/health`` on ``[health] listen`` for the block's duration."""
    if not settings.enabled:
        yield
        return

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

    app = web.Application()
    app.router.add_get("/health", health)
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
