"""GraphQL subscriptions of WinCC Unified: the ``graphql-transport-ws`` protocol over one
WebSocket on the GraphQL URL.

The token goes both in the upgrade request and in ``connection_init`` (runtimes read one
or the other); compression stays off (clients have seen frame errors with it). Every
``next`` carries one notification. The socket is the caller's to own: ``messages`` yields
until the server closes it or it breaks, and anything that ends it is a ``WinCCError``:
``WinCCAuthError`` when the server refuses the session, ``WinCCUnavailable`` when the
link is lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, Self

import aiohttp
import orjson

from gateway.core.values import short_text, show
from gateway.errors import WinCCAuthError, WinCCError, WinCCProtocolError, WinCCUnavailable

log = logging.getLogger(__name__)

PROTOCOL = "graphql-transport-ws"
MAX_MESSAGE = 16 * 1024 * 1024
"""Largest WebSocket message taken from the runtime; one notification is far smaller."""
UNAUTHORIZED = 4401
FORBIDDEN = 4403


class Notification:
    """One ``next`` of a subscription: its id and the ``data`` object it carries."""

    __slots__ = ("data", "id")

    def __init__(self, subscription: str, data: dict[str, Any]) -> None:
        self.id = subscription
        self.data = data


class SubscriptionSocket:
    """One ``graphql-transport-ws`` connection and the subscriptions it carries."""

    def __init__(
        self, session: aiohttp.ClientSession, url: str, token: str, *, timeout: float
    ) -> None:
        self._session = session
        self._url = "ws" + url.removeprefix("http")  # https -> wss, http -> ws
        self._token = token
        self._timeout = timeout
        self._ws: aiohttp.ClientWebSocketResponse | None = None

    async def __aenter__(self) -> Self:
        """Connect (see ``connect``)."""
        await self.connect()
        return self

    async def connect(self) -> None:
        """Connect and initialise; the server must acknowledge within the timeout."""
        bearer = f"Bearer {self._token}"
        try:
            async with asyncio.timeout(self._timeout):
                self._ws = await self._session.ws_connect(
                    self._url,
                    protocols=(PROTOCOL,),
                    headers={"Authorization": bearer},
                    compress=0,
                    max_msg_size=MAX_MESSAGE,
                    autoping=True,
                )
                await self._send({"type": "connection_init", "payload": {"Authorization": bearer}})
                message = await self._receive()
        except TimeoutError as exc:
            await self.close()
            raise WinCCUnavailable(
                f"{self._url}: no connection_ack within {self._timeout:g} s"
            ) from exc
        except aiohttp.WSServerHandshakeError as exc:
            await self.close()
            if exc.status in (401, 403):
                raise WinCCAuthError(
                    f"{self._url}: the WebSocket upgrade was refused ({exc.status})"
                ) from exc
            raise WinCCUnavailable(f"{self._url}: WebSocket upgrade failed ({exc.status})") from exc
        except aiohttp.ClientError as exc:
            await self.close()
            raise WinCCUnavailable(f"{self._url}: {type(exc).__name__}: {exc}") from exc
        except BaseException:
            await self.close()
            raise
        if message.get("type") != "connection_ack":
            await self.close()
            raise WinCCProtocolError(
                f"{self._url}: expected connection_ack, got {show(message.get('type'))}"
            )

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the socket (the server ends its subscriptions with it)."""
        ws, self._ws = self._ws, None
        if ws is not None and not ws.closed:
            await ws.close()

    async def subscribe(self, subscription: str, document: str, variables: dict[str, Any]) -> None:
        """Start a subscription under the id ``subscription``."""
        await self._send(
            {
                "id": subscription,
                "type": "subscribe",
                "payload": {"query": document, "variables": variables},
            }
        )

    async def ping(self) -> None:
        """Ask the server for a ``pong``: the link is alive when ``messages`` sees it."""
        await self._send({"type": "ping"})

    async def messages(self) -> AsyncIterator[Notification | None]:
        """The notifications as they come, and None for every ``pong`` (the link lives);
        ends only by raising: the server closed the socket, refused a subscription, or
        the link broke."""
        while True:
            message = await self._receive()
            kind = message.get("type")
            if kind == "next":
                payload = message.get("payload")
                data = payload.get("data") if type(payload) is dict else None
                if type(data) is not dict:
                    errors = payload.get("errors") if type(payload) is dict else None
                    raise _refusal(self._url, message.get("id"), errors or payload)
                yield Notification(str(message.get("id")), data)
            elif kind == "ping":
                await self._send({"type": "pong"})
            elif kind == "pong":
                yield None
            elif kind == "error":
                raise _refusal(self._url, message.get("id"), message.get("payload"))
            elif kind == "complete":
                raise WinCCUnavailable(
                    f"{self._url}: the server completed subscription {show(message.get('id'))}"
                )
            else:
                log.debug("%s: ignored a %s message", self._url, show(kind))

    async def _send(self, message: dict[str, Any]) -> None:
        ws = self._ws
        if ws is None or ws.closed:
            raise WinCCUnavailable(f"{self._url}: the WebSocket is closed")
        try:
            await ws.send_str(orjson.dumps(message).decode())
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise WinCCUnavailable(f"{self._url}: {type(exc).__name__}: {exc}") from exc

    async def _receive(self) -> dict[str, Any]:
        """The next protocol message; a close or a broken link as a ``WinCCError``."""
        ws = self._ws
        if ws is None:
            raise WinCCUnavailable(f"{self._url}: the WebSocket is closed")
        frame = await ws.receive()
        if frame.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
            try:
                message = orjson.loads(frame.data)
            except orjson.JSONDecodeError as exc:
                raise WinCCProtocolError(f"{self._url}: a message is not JSON") from exc
            if type(message) is not dict:
                raise WinCCProtocolError(f"{self._url}: a message is {show(message)}")
            return message
        code = ws.close_code
        if code in (UNAUTHORIZED, FORBIDDEN):
            raise WinCCAuthError(
                f"{self._url}: the server closed the WebSocket ({code}): session refused"
            )
        if frame.type is aiohttp.WSMsgType.ERROR:
            raise WinCCUnavailable(f"{self._url}: WebSocket error: {short_text(str(frame.data))}")
        raise WinCCUnavailable(f"{self._url}: the server closed the WebSocket ({code})")


def _refusal(url: str, subscription: object, errors: object) -> WinCCError:
    """The error a refused subscription stands for."""
    text = short_text(orjson.dumps(errors).decode()) if errors is not None else "no reason given"
    if any(word in text.lower() for word in ("auth", "token", "session", "login")):
        return WinCCAuthError(f"{url}: subscription {show(subscription)} refused: {text}")
    return WinCCProtocolError(f"{url}: subscription {show(subscription)} refused: {text}")
