"""The MQTT side: one long-lived session that publishes the buffer and keeps status true.

It connects with the will ``P/status`` = offline (retained, QoS 1), publishes online on
every connect, reconnects with capped full-jitter backoff, hands back whatever the broker
did not acknowledge, and on a clean stop drains, publishes offline and disconnects.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiomqtt
from paho.mqtt import client as mqtt_client
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateway.backoff import Backoff
from gateway.buffer import DurableBuffer, Message, Queued
from gateway.core.payloads import status_payload
from gateway.core.timestamps import now_ms

if TYPE_CHECKING:
    from gateway.config import MqttSettings

log = logging.getLogger(__name__)

MessageHandler = Callable[[aiomqtt.Client, aiomqtt.Message], Awaitable[None]]

RECONNECT_CAP = 10.0
"""Longest wait between two connection attempts (full jitter below it)."""

PUBLISH_WINDOW = 1000
"""Messages in flight (sent, not yet acknowledged) at once: enough to keep the link full."""


def build_tls_context(settings: MqttSettings) -> ssl.SSLContext | None:
    """TLS for ``mqtts://``: the broker's CA, an optional client certificate (mTLS)."""
    if urlsplit(settings.url).scheme != "mqtts":
        return None
    cafile = str(settings.ca_file) if settings.ca_file else None
    context = ssl.create_default_context(cafile=cafile)
    if settings.cert_file and settings.key_file:
        context.load_cert_chain(settings.cert_file, settings.key_file)
    if not settings.verify_tls:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # only behind the documented verify_tls = false
    return context


class MqttSession:
    """Owns the broker connection for the gateway's whole life."""

    def __init__(
        self,
        settings: MqttSettings,
        buffer: DurableBuffer,
        *,
        subscriptions: tuple[str, ...] = (),
        on_message: MessageHandler | None = None,
    ) -> None:
        self._settings = settings
        self._buffer = buffer
        self._subscriptions = subscriptions
        self._on_message = on_message
        self._status_topic = f"{settings.topic_prefix}/status"
        self._since_ms = now_ms()
        self._source = "unknown"
        self._published_source = self._source
        self._client: aiomqtt.Client | None = None
        self._stopping = False
        self.connected = asyncio.Event()
        self.reconnects = 0
        self.published = 0
        self.refused = 0
        self._refused_topics: set[str] = set()
        self._window = PUBLISH_WINDOW

    def _new_client(self) -> aiomqtt.Client:
        settings = self._settings
        parts = urlsplit(settings.url)
        offline = status_payload("offline", now_ms())
        client = aiomqtt.Client(
            hostname=parts.hostname or "localhost",
            port=parts.port or (8883 if parts.scheme == "mqtts" else 1883),
            identifier=settings.client_id,
            username=settings.username,
            password=settings.password.get_secret_value() if settings.password else None,
            protocol=(
                aiomqtt.ProtocolVersion.V5
                if settings.protocol == 5
                else aiomqtt.ProtocolVersion.V311
            ),
            will=aiomqtt.Will(self._status_topic, offline, qos=1, retain=True),
            keepalive=int(settings.keepalive),
            tls_context=build_tls_context(settings),
            max_inflight_messages=0,  # the window in _drain bounds what is in flight
            timeout=30,
        )
        self._window = PUBLISH_WINDOW
        forward: Any = client._client.on_connect  # aiomqtt's own handler

        def connected(mqtt: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
            # MQTT 5: never have more in flight than the broker's Receive Maximum.
            receive_maximum = getattr(props, "ReceiveMaximum", None)
            if isinstance(receive_maximum, int) and receive_maximum > 0:
                self._window = min(PUBLISH_WINDOW, receive_maximum)
            forward(mqtt, userdata, flags, reason, props)

        client._client.on_connect = connected
        return client

    async def set_source(self, state: str) -> None:
        """Record the WinCC source state (``up``/``down``) and republish the status."""
        if state == self._source:
            return
        self._source = state
        client = self._client
        if client is not None and self.connected.is_set():
            try:
                await self._publish_status(client, "online")
            except aiomqtt.MqttError as exc:
                log.debug("status not updated, broker connection lost: %s", exc)

    async def _publish_status(self, client: aiomqtt.Client, state: str) -> None:
        self._published_source = self._source
        payload = status_payload(state, self._since_ms, source=self._source)
        await client.publish(self._status_topic, payload, qos=1, retain=True)

    async def run(self) -> None:
        """Connect, publish, reconnect, until ``stop()`` has drained the buffer."""
        backoff = Backoff(base=0.5, cap=RECONNECT_CAP)
        down_logged = False
        while True:
            try:
                async with self._new_client() as client:
                    self._client = client
                    backoff.reset()
                    down_logged = False
                    self._since_ms = now_ms()
                    await self._publish_status(client, "online")
                    for topic in self._subscriptions:
                        await client.subscribe(topic, qos=1)
                    self.connected.set()
                    if self._published_source != self._source:  # changed while subscribing
                        await self._publish_status(client, "online")
                    log.info(
                        "connected to broker %s as %s", self._where(), self._settings.client_id
                    )
                    finished = await self._serve(client)
                    if finished:
                        await self._publish_status(client, "offline")
                        log.info("status set to offline, disconnecting from the broker")
                        return
            except aiomqtt.MqttError as exc:
                self.connected.clear()
                self._client = None
                if self._stopping:
                    log.warning(
                        "broker lost while stopping; %d messages not delivered", len(self._buffer)
                    )
                    return
                if not down_logged:
                    log.warning("broker %s unreachable: %s; retrying", self._where(), exc)
                    down_logged = True
                self.reconnects += 1
                await asyncio.sleep(backoff.next_delay())
            finally:
                self.connected.clear()
                self._client = None

    async def _serve(self, client: aiomqtt.Client) -> bool:
        """Publish and receive until the buffer is closed and empty (True) or an error.

        Both tasks are owned here: whichever ends first ends the other, and its error
        (the MqttError of a lost link) propagates as itself, not wrapped in a group.
        """
        receiver = asyncio.create_task(self._receive(client), name="mqtt-receive")
        drainer = asyncio.create_task(self._drain(client), name="mqtt-publish")
        try:
            done, _ = await asyncio.wait({receiver, drainer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (receiver, drainer):
                task.cancel()
            await asyncio.wait({receiver, drainer})
        for task in done:
            task.result()
        return drainer in done

    async def _receive(self, client: aiomqtt.Client) -> None:
        """Hand inbound messages to the handler; raises MqttError when the link drops."""
        async for message in client.messages:
            if self._on_message is not None:
                await self._on_message(client, message)

    async def _drain(self, client: aiomqtt.Client) -> None:
        """Publish the buffer, pipelined; acknowledged messages are deleted from it, and
        what is still unacknowledged when the link drops goes back in front.

        aiomqtt's ``publish()`` awaits each acknowledgement and does bookkeeping linear in
        the number pending, which caps a gateway near 2,000 messages a second. Here the
        window of messages in flight is handed to paho directly (aiomqtt's own client,
        driven by aiomqtt's event-loop I/O) and PUBACKs are matched by message id.
        """
        paho = client._client  # aiomqtt < 3 offers no pipelined publish of its own
        in_flight: dict[int, Queued] = {}
        room = asyncio.Event()
        forward: Any = paho.on_publish  # aiomqtt's own handler, a paho v2 callback

        def acknowledged(
            mqtt: Any, userdata: Any, mid: int, reason: ReasonCode, props: Properties
        ) -> None:
            queued = in_flight.pop(mid, None)
            if queued is None:  # one of aiomqtt's own publishes: status, command answers
                if forward is not None:
                    forward(mqtt, userdata, mid, reason, props)
                return
            if reason.is_failure:
                self._refused(queued, reason)
            self._buffer.ack([queued])
            self.published += 1
            room.set()

        paho.on_publish = acknowledged
        try:
            while True:
                free = self._window - len(in_flight)
                if free <= 0:
                    room.clear()
                    await room.wait()
                    continue
                batch = await self._buffer.take(free)
                if not batch:  # stopping, and everything was taken
                    while in_flight:
                        room.clear()
                        await room.wait()
                    return
                for index, queued in enumerate(batch):
                    _, message = queued
                    info = paho.publish(message.topic, message.payload, message.qos, message.retain)
                    if info.rc != mqtt_client.MQTT_ERR_SUCCESS:
                        self._buffer.requeue(batch[index:])  # this one and the rest, in order
                        raise aiomqtt.MqttCodeError(info.rc, "could not publish")
                    if info.is_published():  # QoS 0, written at once
                        self._buffer.ack([queued])
                        self.published += 1
                    else:
                        in_flight[info.mid] = queued
        finally:
            paho.on_publish = forward
            if in_flight:
                self._buffer.requeue(sorted(in_flight.values(), key=lambda item: item[0]))

    def _refused(self, queued: Queued, reason: ReasonCode) -> None:
        """The broker took a message but refused it (MQTT 5 reason code, e.g. not
        authorized): resending cannot help, so it is counted and logged, once per topic."""
        self.refused += 1
        topic = queued[1].topic
        if topic not in self._refused_topics and len(self._refused_topics) < 1000:
            self._refused_topics.add(topic)
            log.error("broker refused a message on %s: %s (check its ACL)", topic, reason)

    async def publish_now(self, message: Message, properties: Properties | None = None) -> None:
        """Publish outside the buffer (command answers); raises MqttError when offline."""
        client = self._client
        if client is None:
            raise aiomqtt.MqttError("not connected to the broker")
        await client.publish(
            message.topic, message.payload, message.qos, message.retain, properties=properties
        )

    def stop(self) -> None:
        """Finish: no more messages will come; ``run`` returns once they are published."""
        self._stopping = True
        self._buffer.close_for_new()

    def _where(self) -> str:
        parts = urlsplit(self._settings.url)
        return f"{parts.scheme}://{parts.hostname}:{parts.port or ''}".rstrip(":")
