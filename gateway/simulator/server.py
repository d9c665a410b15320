"""The simulated WinCC server over aiohttp: a ``Plant``, the API of one dialect in front of
it (``rest_api.RestApi``, ``classic.ClassicApi`` or ``unified_api.UnifiedApi``), and fault
injection.

Faults and authentication live in one middleware so every API route gets them alike; the
``/_sim/`` routes are the simulator's own control surface and are never faulted.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, Self

from aiohttp import web

from gateway.core.timestamps import now_ms
from gateway.simulator.classic import ClassicApi, is_classic_path
from gateway.simulator.faults import Faults, FaultsError
from gateway.simulator.plant import Plant
from gateway.simulator.realistic import realistic_layout
from gateway.simulator.rest_api import (
    LOGIN_PATH,
    ApiError,
    RestApi,
    error_response,
    json_response,
    read_body,
)
from gateway.simulator.sweep import SweepPlant
from gateway.simulator.tls import load_server_context, make_server_context
from gateway.simulator.unified_api import GRAPHQL_PATH, UnifiedApi

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT = 2.0  # seconds in-flight requests get when the simulator stops
CATCH_UP_TICKS = 5
"""Plant time one step makes up at most, in ticks: beyond it the plant skips ahead, so
that a change rate too high for the CPU slows the plant, not the HTTP answers."""

LOGIN_PAGE = (
    "<!DOCTYPE html><html><head><title>Sign in</title></head><body>"
    '<form method="post" action="/login"><input name="user"><input name="password" '
    'type="password"><button>Sign in</button></form></body></html>'
)
"""What the ``html_login`` fault answers: a proxy's login page instead of the API."""

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(slots=True)
class SimulatorOptions:
    """How to run the simulator; the fault fields are only the initial ``Faults``."""

    host: str = "127.0.0.1"
    port: int = 8443  # 0 picks a free port; ``Simulator.url`` tells which
    tags: int = 1000
    alarms: int = 20
    username: str = "demo"
    password: str = "demo"  # noqa: S105 - the documented demo credentials of SPEC.md
    change_rate: float = 0.1
    bad_quality: float = 0.0
    latency_ms: int = 0
    error_rate: float = 0.0
    drop_rate: float = 0.0
    token_ttl: float = 3600.0
    clock_offset: float = 0.0  # seconds the simulated WinCC clock runs ahead of the host's
    html_login: bool = False
    unauthorized: bool = False
    seed: int | None = None
    tick: float = 0.1  # seconds between plant steps
    history_depth: int = 1000  # changes kept per tag
    tls: bool = False  # without cert/key: a throwaway CA and certificate made at start
    cert: str | None = None
    key: str | None = None
    dialect: Literal["rest", "classic", "unified"] = "rest"  # which API is served
    graphql_path: str = GRAPHQL_PATH  # where the unified dialect serves GraphQL
    auto_logoff: float = 300.0  # seconds of inactivity that end a unified session
    realistic: bool = False  # floats only, folders typed null, a six-level tree
    sweep: bool = False  # drifting tags change in turn with counter values (``SweepPlant``)


class _LoginPage(Exception):
    """Ends a request with 200 and an HTML login page (the ``html_login`` fault)."""


class _Dropped(Exception):
    """The connection was closed on purpose; nothing is to be answered."""


class Simulator:
    """The simulated WinCC server: a plant, its HTTP API and the faults in between."""

    def __init__(
        self, options: SimulatorOptions, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        if not options.tick > 0:
            raise ValueError("tick must be a positive number of seconds")
        self.options = options
        self.faults = Faults(
            latency_ms=options.latency_ms,
            error_rate=options.error_rate,
            drop_rate=options.drop_rate,
            token_ttl=options.token_ttl,
            bad_quality=options.bad_quality,
            change_rate=options.change_rate,
            clock_offset=options.clock_offset,
            html_login=options.html_login,
            unauthorized=options.unauthorized,
        )
        self.plant = (SweepPlant if options.sweep else Plant)(
            options.tags,
            options.alarms,
            now_ms=self.now(),
            seed=options.seed,
            history_depth=options.history_depth,
            layout=realistic_layout(options.tags) if options.realistic else None,
        )
        self.write_log: list[tuple[str, object]] = []
        self.ack_log: list[tuple[str, str | None]] = []
        self.arrived: deque[str] = deque(maxlen=10_000)  # "METHOD path" of the latest requests
        self._arrivals = asyncio.Condition()
        self.reads = 0
        self.read_items = 0
        self.writes = 0
        self.acks = 0
        self.certificate_pem: bytes | None = None  # CA of a certificate made at start
        self.classic = ClassicApi(self)  # the classic REST service, served with dialect classic
        self.rest = RestApi(self)  # the rest API, served with dialect rest
        self.unified = UnifiedApi(self)  # the GraphQL runtime, served with dialect unified
        self._ssl = ssl_context
        self._rng = random.Random(options.seed)
        self._runner: web.AppRunner | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._url: str | None = None
        self._started = 0.0

    # --- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Bind the port and start changing the plant."""
        if self._runner is not None:
            raise RuntimeError("simulator already started")
        context = self._ssl
        if context is None and self.options.tls:
            if self.options.cert and self.options.key:
                context = load_server_context(self.options.cert, self.options.key)
            else:
                context, self.certificate_pem = make_server_context([self.options.host])
        runner = web.AppRunner(self._app(), access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.options.host, self.options.port, ssl_context=context)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        host, port = runner.addresses[0][:2]
        host_text = f"[{host}]" if ":" in host else host
        self._url = f"{'https' if context else 'http'}://{host_text}:{port}"
        self._started = time.monotonic()
        # skip the time between construction and start, so it makes no burst of changes
        self.plant.step(self.now(), change_rate=0.0)
        self._ticker = asyncio.create_task(self._tick(), name="simulator-plant")

    async def stop(self) -> None:
        """Stop the plant and the server; safe to call twice."""
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.wait([self._ticker])  # waits without re-raising its cancellation
            self._ticker = None
        if self._runner is not None:
            self.unified.drop_websockets()  # they would hold the shutdown up
            await self._runner.cleanup()
            self._runner = None

    def now(self) -> int:
        """The simulated WinCC clock, epoch milliseconds: the host's, shifted by the
        ``clock_offset`` fault. The plant, its archive and every timestamp served run on it."""
        return now_ms() + round(self.faults.clock_offset * 1000)

    @property
    def url(self) -> str:
        """Base URL with the bound port, e.g. ``https://127.0.0.1:54321``."""
        if self._url is None:
            raise RuntimeError("simulator not started")
        return self._url

    def stats(self) -> dict[str, object]:
        """The counters ``/_sim/stats`` reports."""
        return {
            "tags": len(self.plant),
            "changes": self.plant.changes,
            "changes_good": self.plant.changes_good,
            "alarm_transitions": self.plant.alarm_transitions,
            "skipped_s": round(self.plant.skipped_s, 3),
            "reads": self.reads,
            "read_items": self.read_items,
            "writes": self.writes,
            "acks": self.acks,
            "uptime_s": round(time.monotonic() - self._started, 3) if self._url else 0.0,
        }

    async def _tick(self) -> None:
        catch_up = self.options.tick * CATCH_UP_TICKS
        behind_reported = False
        while True:
            await asyncio.sleep(self.options.tick)
            self.plant.step(
                self.now(),
                change_rate=self.faults.change_rate,
                bad_quality=self.faults.bad_quality,
                catch_up_s=catch_up,
            )
            if self.options.dialect == "unified":
                self.unified.expire_idle()
                if self.faults.down:  # a runtime that is down keeps no connection
                    self.unified.drop_websockets()
            if self.plant.skipped_s and not behind_reported:
                behind_reported = True
                log.warning(
                    "the simulated plant falls behind: %d tags at %g changes per tag and "
                    "second need more CPU than it gets, so it makes fewer changes than asked "
                    "(skipped_s in /_sim/stats adds up the plant time skipped)",
                    len(self.plant),
                    self.faults.change_rate,
                )

    # --- HTTP ----------------------------------------------------------------------------

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/_sim/faults", self._get_faults)
        app.router.add_post("/_sim/faults", self._set_faults)
        app.router.add_get("/_sim/stats", self._stats)
        if self.options.dialect == "classic":
            self.classic.mount(app.router)
            return app
        if self.options.dialect == "unified":
            app.router.add_post("/_sim/expire-sessions", self._expire_sessions)
            app.router.add_post("/_sim/drop-websockets", self._drop_websockets)
            self.unified.mount(app.router)
            return app
        self.rest.mount(app.router)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        """Faults and authentication for ``/api/``; JSON errors everywhere.

        The classic REST service gets the same faults; it checks Basic auth itself.
        """
        writes = await self.unified.writes_in(request) if self.options.dialect == "unified" else []
        async with self._arrivals:
            self.arrived.append(f"{request.method} {request.path}")
            self.arrived.extend(writes)
            self._arrivals.notify_all()
        try:
            if request.path.startswith("/api/") and self.options.dialect == "rest":
                await self._inject_faults(request)
                if request.path != LOGIN_PATH:
                    self.rest.authorize(request)
            elif self._faulted(request.path):
                await self._inject_faults(request)
            return await handler(request)
        except ApiError as exc:
            return error_response(exc.status, exc.message)
        except _Dropped:
            return web.Response()  # the transport is gone; this only completes the handler
        except _LoginPage:
            return web.Response(text=LOGIN_PAGE, content_type="text/html")
        except web.HTTPException as exc:  # no such route, method not allowed, ...
            return error_response(exc.status, exc.reason)

    def _faulted(self, path: str) -> bool:
        """Whether the faults apply to a path of the classic or unified dialect."""
        if self.options.dialect == "classic":
            return is_classic_path(path)
        return self.options.dialect == "unified" and self.unified.owns(path)

    async def wait_for_request(self, method: str, path_part: str) -> None:
        """Wait until a request ``method`` whose path holds ``path_part`` has come in (it
        may still be held by the latency fault): tests see a request in flight. The caller
        bounds the wait."""

        def seen() -> bool:
            return any(line.startswith(method + " ") and path_part in line for line in self.arrived)

        async with self._arrivals:
            await self._arrivals.wait_for(seen)

    async def _inject_faults(self, request: web.Request) -> None:
        faults = self.faults
        if faults.latency_ms:
            await asyncio.sleep(faults.latency_ms / 1000.0)
        if faults.down:
            raise ApiError(503, "service unavailable (simulated outage)")
        if faults.unauthorized:
            raise ApiError(401, "unauthorized (simulated)")
        if faults.html_login:
            raise _LoginPage
        if faults.drop_rate and self._rng.random() < faults.drop_rate:
            if request.transport is not None:
                request.transport.abort()
            raise _Dropped
        if faults.error_rate and self._rng.random() < faults.error_rate:
            raise ApiError(self._rng.choice((500, 503)), "internal error (simulated)")

    async def _get_faults(self, request: web.Request) -> web.Response:
        return json_response(self.faults.model_dump())

    async def _set_faults(self, request: web.Request) -> web.Response:
        try:
            self.faults.apply(await read_body(request))
        except FaultsError as exc:
            raise ApiError(400, str(exc)) from exc
        return json_response(self.faults.model_dump())

    async def _stats(self, request: web.Request) -> web.Response:
        return json_response(self.stats())

    async def _expire_sessions(self, request: web.Request) -> web.Response:
        """End every unified session, as a runtime restart does."""
        return json_response({"expired": self.unified.end_sessions()})

    async def _drop_websockets(self, request: web.Request) -> web.Response:
        """Cut every unified WebSocket, as a network outage does."""
        return json_response({"dropped": self.unified.drop_websockets()})
