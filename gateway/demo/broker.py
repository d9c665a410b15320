"""The demo's MQTT side: an embedded amqtt broker on loopback and the subscriber whose
messages feed the view."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from amqtt.broker import Broker
from amqtt.contexts import BrokerConfig, ListenerConfig
from amqtt.errors import BrokerError

from gateway.demo.view import DemoView
from gateway.errors import GatewayError
from gateway.mqtt.watch import watch

Messages = AsyncIterator[tuple[str, bytes]]
"""What the subscriber hands on: (topic, payload) pairs."""


class _Broker(Broker):  # type: ignore[misc]  # amqtt ships no type information
    """amqtt's broker, delivering retained messages only to the subscriptions they match.

    amqtt 0.12, when a client connects, offers it the retained messages of every topic
    filter any client subscribed to, not of its own: a subscriber to ``nothing/here``
    received the gateway's whole retained tree. A filter the new client has not
    subscribed to itself is skipped here; on a subscription of its own the filter is its.
    """

    async def _publish_retained_messages_for_subscription(
        self, subscription: tuple[str, int], session: Any
    ) -> None:
        topic_filter = subscription[0]
        subscribers = self._subscriptions.get(topic_filter, ())
        if any(subscriber.client_id == session.client_id for subscriber, _ in subscribers):
            await super()._publish_retained_messages_for_subscription(subscription, session)


@contextlib.asynccontextmanager
async def embedded_broker(host: str, port: int) -> AsyncIterator[int]:
    """amqtt on ``host``, anonymous, without plugins that write files; yields its port."""
    config = BrokerConfig(
        listeners={"default": ListenerConfig(bind=f"{host}:{port}")},
        plugins={"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    )
    broker = _Broker(config)
    broker_log = logging.getLogger("amqtt.broker")
    level = broker_log.level
    broker_log.setLevel(logging.CRITICAL)  # a failed start is reported below, once, in one line
    try:
        await broker.start()
    except BrokerError as exc:
        raise GatewayError(
            f"the embedded broker cannot listen on {host}:{port}: {exc.__cause__ or exc}"
        ) from exc
    finally:
        broker_log.setLevel(level)
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()

    def one_line_for_dropped_clients(
        loop: asyncio.AbstractEventLoop, context: dict[str, Any]
    ) -> None:
        # amqtt lets a client connection that breaks off (a subscriber killed, a stop
        # while a client is connecting) escape to asyncio, which prints a traceback.
        if context.get("message") == "Unhandled exception in client_connected_cb":
            broker_log.debug("a client connection ended: %r", context.get("exception"))
        elif previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(one_line_for_dropped_clients)
    try:
        # amqtt does not report the port it bound for port 0; its listener's server knows.
        yield int(broker._servers["default"].instance.sockets[0].getsockname()[1])
    finally:
        await broker.shutdown()
        loop.set_exception_handler(previous)


def subscriber(
    host: str, port: int, prefix: str
) -> contextlib.AbstractAsyncContextManager[Messages]:
    """A client of the embedded broker subscribed to everything under the demo's prefix."""
    return watch(host, port, prefix, client_id="wincc-demo-view")


async def feed(messages: Messages, view: DemoView) -> None:
    """Hand every message the subscriber receives to the view."""
    loop = asyncio.get_running_loop()
    async for topic, payload in messages:
        view.handle(topic, payload, loop.time())
