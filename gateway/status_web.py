"""The status page over HTTP: ``GET /`` (one static file) and ``GET /events`` (its data).

The page is read-only, whoever reaches it. ``health.token``, when set, guards both: as a
bearer token, or as the cookie ``/?token=...`` sets once and redirects from, so that the
token leaves the address bar. ``/events`` is a stream of server-sent events: one snapshot
at once, then one a second, built only while a page is connected.
"""

from __future__ import annotations

import asyncio
import hmac
import importlib.resources
import json
import logging
from typing import Any

import orjson
from aiohttp import web
from pydantic import SecretStr

from gateway.status_page import StatusBoard

log = logging.getLogger(__name__)

COOKIE = "wincc_gateway_token"
PERIOD = 1.0
"""Seconds between two snapshots, and between two ticks of the trend."""
FILTER_LIMIT = 100
"""Characters of the tag filter a page may send."""
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; style-src 'unsafe-inline'; "
    "script-src 'unsafe-inline'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def page_html() -> bytes:
    """The page, shipped in the package."""
    return importlib.resources.files("gateway").joinpath("static/status.html").read_bytes()


def token_matches(given: str | None, token: SecretStr) -> bool:
    """Constant-time comparison, so the answer's timing tells nothing of the token."""
    if given is None:
        return False
    return hmac.compare_digest(given.encode(), token.get_secret_value().encode())


def authorized(request: web.Request, token: SecretStr | None) -> bool:
    """No token set: everyone may read. Else the bearer token or the cookie must match."""
    if token is None:
        return True
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token_matches(given.strip(), token):
        return True
    return token_matches(request.cookies.get(COOKIE), token)


def _unauthorized() -> web.Response:
    return web.Response(
        status=401,
        text="401: this status page needs its token (Authorization: Bearer, or /?token=...)\n",
        headers={"WWW-Authenticate": 'Bearer realm="wincc-gateway"', "Cache-Control": "no-store"},
    )


class StatusPage:
    """Serves the page and its stream from one board; ``run`` ticks it until cancelled."""

    def __init__(self, board: StatusBoard, token: SecretStr | None) -> None:
        self._board = board
        self._token = token
        self._page = page_html()
        self._closing = asyncio.Event()
        self._fresh = asyncio.Event()  # replaced after each tick: viewers wait on it

    def add_routes(self, app: web.Application) -> None:
        """``/`` and ``/events`` on ``app``; open streams end when the app shuts down."""
        app.router.add_get("/", self._index)
        app.router.add_get("/events", self._events)
        app.on_shutdown.append(self._shutdown)

    async def run(self) -> None:
        """Tick the board once a second, and wake the viewers, until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            self._board.tick(loop.time())
            fresh, self._fresh = self._fresh, asyncio.Event()
            fresh.set()
            await asyncio.sleep(PERIOD)

    async def _shutdown(self, _app: web.Application) -> None:
        self._closing.set()
        self._fresh.set()  # the viewers wake, see the server closing, and end their streams

    async def _index(self, request: web.Request) -> web.StreamResponse:
        token = self._token
        given = request.query.get("token")
        if token is not None and given is not None:
            if not token_matches(given, token):
                return _unauthorized()
            response = web.Response(
                status=303, headers={"Location": "/", "Cache-Control": "no-store"}
            )
            response.set_cookie(
                COOKIE,
                token.get_secret_value(),
                httponly=True,
                samesite="Strict",
                path="/",
                secure=request.secure,
            )
            response.headers["Referrer-Policy"] = "no-referrer"
            return response
        if not authorized(request, token):
            return _unauthorized()
        return web.Response(body=self._page, content_type="text/html", headers=_PAGE_HEADERS)

    async def _events(self, request: web.Request) -> web.StreamResponse:
        if not authorized(request, self._token):
            return _unauthorized()
        tag_filter = request.query.get("tag", "")[:FILTER_LIMIT]
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        loop = asyncio.get_running_loop()
        snapshot = self._board.snapshot(loop.time(), tag_filter, history=True)
        try:
            while True:
                await response.write(_event(snapshot))
                if not await self._next_tick():
                    break
                snapshot = self._board.snapshot(loop.time(), tag_filter)
        except ConnectionError:
            pass  # the page was closed
        return response

    async def _next_tick(self) -> bool:
        """Wait for the next tick; False once the server shuts down."""
        if not self._closing.is_set():
            await self._fresh.wait()
        return not self._closing.is_set()


def _event(snapshot: dict[str, Any]) -> bytes:
    try:
        body = orjson.dumps(snapshot)
    except TypeError:  # a tag value orjson cannot encode (an integer beyond 64 bits)
        body = json.dumps(snapshot, default=str).encode()
    return b"data: " + body + b"\n\n"
