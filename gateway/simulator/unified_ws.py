"""Subscriptions of the simulated Unified runtime: the ``graphql-transport-ws`` protocol.

One ``WebSocketConnection`` per socket: ``connection_init`` (the session token in its
payload as ``{"Authorization": "Bearer <token>"}`` or in the upgrade request's header) is
answered ``connection_ack``; each ``subscribe`` runs as a task sending one ``next`` per
notification until either side sends ``complete``; a query or mutation sent as
``subscribe`` gets one ``next`` and ``complete``, a document that does not validate an
``error``. Close codes: 4400 malformed message, 4401 ``subscribe`` before the
acknowledgement or the session ended, 4403 ``connection_init`` without a live session, 4406
subprotocol not offered, 4408 no ``connection_init`` in time, 4409 subscription id in use,
4429 a second ``connection_init``. Compression is off: clients were seen to fail on
compressed frames.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import WSMsgType, web
from graphql import ExecutionResult

if TYPE_CHECKING:
    from gateway.simulator.unified_api import UnifiedApi

PROTOCOL = "graphql-transport-ws"

BAD_REQUEST = 4400
UNAUTHORIZED = 4401
FORBIDDEN = 4403
SUBPROTOCOL_NOT_ACCEPTABLE = 4406
INIT_TIMED_OUT = 4408
SUBSCRIBER_EXISTS = 4409
TOO_MANY_INIT = 4429
_ENDED = (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR)


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` value."""
    scheme, _, token = (header or "").partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


class _Close(Exception):
    """Ends the connection with a close code and reason."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


async def serve_websocket(api: UnifiedApi, request: web.Request) -> web.WebSocketResponse:
    """Serve one WebSocket until it closes; the upgrade already passed the faults."""
    socket = web.WebSocketResponse(protocols=(PROTOCOL,), compress=False)
    await socket.prepare(request)
    if socket.ws_protocol != PROTOCOL:
        await socket.close(code=SUBPROTOCOL_NOT_ACCEPTABLE, message=b"Subprotocol not acceptable")
        return socket
    connection = WebSocketConnection(
        api, request, socket, bearer(request.headers.get("Authorization"))
    )
    api.connections.add(connection)
    try:
        await connection.run()
    finally:
        api.connections.discard(connection)
        await connection.stop()
        connection.ended.set()
    return socket


class WebSocketConnection:
    """One client's socket: its session token once initialised, and its subscriptions."""

    def __init__(
        self,
        api: UnifiedApi,
        request: web.Request,
        socket: web.WebSocketResponse,
        header_token: str | None,
    ) -> None:
        self._api = api
        self._request = request
        self._socket = socket
        self._header_token = header_token
        self.token: str | None = None  # the session's, once connection_init is accepted
        self._init_seen = False
        self._streams: dict[str, asyncio.Task[None]] = {}
        self._send_lock = asyncio.Lock()
        self._closing: asyncio.Task[None] | None = None
        self.ended = asyncio.Event()  # set once the socket and its subscriptions are gone

    async def run(self) -> None:
        """Read messages until the socket closes or the client breaks the protocol."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._api.init_timeout
        while not self._socket.closed:
            timeout = None if self.token else max(0.0, deadline - loop.time())
            try:
                message = await self._socket.receive(timeout=timeout)
            except TimeoutError:
                await self._close(INIT_TIMED_OUT, "Connection initialisation timeout")
                return
            if message.type in _ENDED:
                return
            if message.type is not WSMsgType.TEXT:
                await self._close(BAD_REQUEST, "Invalid message: text frames only")
                return
            try:
                await self._handle(message.data)
            except _Close as exc:
                await self._close(exc.code, exc.reason)
                return

    def end(self, code: int, reason: str) -> None:
        """Close the socket with ``code`` from outside its own task."""
        if self._closing is None:
            self._closing = asyncio.create_task(self._close(code, reason))

    def drop(self) -> None:
        """Cut the connection without a closing handshake."""
        if self._request.transport is not None:
            self._request.transport.abort()

    async def stop(self) -> None:
        """End every subscription task of the connection."""
        tasks = list(self._streams.values())
        self._streams.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _close(self, code: int, reason: str) -> None:
        await self.stop()
        with contextlib.suppress(ConnectionError):
            await self._socket.close(code=code, message=reason.encode())

    async def _send(self, message: dict[str, Any]) -> None:
        async with self._send_lock:
            await self._socket.send_str(orjson.dumps(message).decode())

    async def _handle(self, text: str) -> None:
        try:
            message = orjson.loads(text)
        except orjson.JSONDecodeError:
            raise _Close(BAD_REQUEST, "Invalid message: not JSON") from None
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "connection_init":
            await self._init(message.get("payload"))
        elif kind == "ping":
            pong: dict[str, Any] = {"type": "pong"}
            if isinstance(message.get("payload"), dict):
                pong["payload"] = message["payload"]
            await self._send(pong)
        elif kind == "pong":
            pass
        elif kind == "subscribe":
            self._subscribe(message)
        elif kind == "complete" and isinstance(message.get("id"), str):
            task = self._streams.pop(message["id"], None)
            if task is not None:
                task.cancel()
        else:
            raise _Close(BAD_REQUEST, f"Invalid message type {kind!r}")

    async def _init(self, payload: object) -> None:
        if self._init_seen:
            raise _Close(TOO_MANY_INIT, "Too many initialisation requests")
        self._init_seen = True
        if payload is not None and not isinstance(payload, dict):
            raise _Close(BAD_REQUEST, "Invalid message: payload must be an object")
        header = None if payload is None else payload.get("Authorization")
        if header is None and payload is not None:
            header = payload.get("authorization")
        token = bearer(header if isinstance(header, str) else None) or self._header_token
        if self._api.session(token) is None:
            raise _Close(FORBIDDEN, "Forbidden: no valid session for this token")
        self.token = token
        await self._send({"type": "connection_ack"})

    def _subscribe(self, message: dict[str, Any]) -> None:
        if self.token is None:
            raise _Close(UNAUTHORIZED, "Unauthorized")
        subscription_id, payload = message.get("id"), message.get("payload")
        if (
            not isinstance(subscription_id, str)
            or not subscription_id
            or not isinstance(payload, dict)
            or not isinstance(payload.get("query"), str)
            or not isinstance(payload.get("variables"), dict | None)
            or not isinstance(payload.get("operationName"), str | None)
        ):
            raise _Close(BAD_REQUEST, "Invalid message: subscribe needs an id and a query")
        if subscription_id in self._streams:
            raise _Close(SUBSCRIBER_EXISTS, f"Subscriber for {subscription_id} already exists")
        self._streams[subscription_id] = asyncio.create_task(
            self._stream(subscription_id, payload), name=f"unified-subscription-{subscription_id}"
        )

    async def _stream(self, subscription_id: str, payload: dict[str, Any]) -> None:
        """Run one operation: ``error``, or ``next`` per result and ``complete`` at its end."""
        try:
            outcome = await self._api.run(
                payload["query"], payload.get("variables"), payload.get("operationName"), self.token
            )
            if isinstance(outcome, list):
                await self._send({"id": subscription_id, "type": "error", "payload": outcome})
                return
            if isinstance(outcome, ExecutionResult):
                await self._next(subscription_id, outcome)
            else:
                try:
                    async for result in outcome:
                        await self._next(subscription_id, result)
                finally:
                    await outcome.aclose()
            await self._send({"id": subscription_id, "type": "complete"})
        except ConnectionError:
            return  # the socket is gone; its loop ends the connection
        finally:
            if self._streams.get(subscription_id) is asyncio.current_task():
                del self._streams[subscription_id]

    async def _next(self, subscription_id: str, result: ExecutionResult) -> None:
        await self._send({"id": subscription_id, "type": "next", "payload": result.formatted})
