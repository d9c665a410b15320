"""The MQTT side: one long-lived session that publishes the buffer and keeps status true.

It connects with the will ``P/status`` = offline (retained, QoS 1), publishes online on
every connect, reconnects with capped full-jitter backoff, hands back whatever the broker
did not acknowledge, and on a clean stop drains, publishes offline and disconnects. A stop
that cannot drain in time leaves so that the broker sends the will: the retained status
never says online for a gateway that is gone.

Nothing outside the session waits for the broker: status changes are handed over and
published by the session's own task. A message the broker can never take (topic or packet
too large) is dropped, counted and logged instead of blocking the ones behind it, and a
link that stops answering is given up within about one keepalive.
"""

from __future__ import annotations

import asyncio
import logging
import math
import ssl
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiomqtt
from paho.mqtt import client as mqtt_client
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateway import __version__
from gateway.backoff import Backoff
from gateway.buffer.outbox import DurableBuffer
from gateway.buffer.store import Message, Queued
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

LEAVE_TIMEOUT = 1.0
"""Seconds a stop that could not drain gives the offline status, then the disconnect, to
reach the broker before the connection is simply closed (which also sends the will)."""

MAX_TOPIC_BYTES = 65_535
"""Longest topic MQTT can carry (a 16-bit length), in UTF-8 bytes."""

DROP_REASONS = ("too_large", "invalid")
"""Why a message the broker can never take was dropped: its topic or packet exceeds what
MQTT or the broker allows, or the client library refuses it."""


def publish_packet_size(topic: bytes, payload: bytes, qos: int, *, mqtt5: bool) -> int:
    """Bytes of a PUBLISH packet without properties, as the broker's Maximum Packet
    Size counts them (fixed header included)."""
    remaining = 2 + len(topic) + (2 if qos else 0) + (1 if mqtt5 else 0) + len(payload)
    length_bytes = max(1, -(-remaining.bit_length() // 7))  # 7 bits per byte
    return 1 + length_bytes + remaining


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
        self._max_packet: int | None = None
        self._status_due = asyncio.Event()
        self._heard = 0.0  # event-loop time the broker last sent a packet
        self.dropped: dict[str, int] = dict.fromkeys(DROP_REASONS, 0)
        self._drops_logged: set[str] = set()

    def _new_client(self) -> aiomqtt.Client:
        settings = self._settings
        parts = urlsplit(settings.url)
        offline = status_payload("offline", now_ms(), version=__version__)
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
        self._max_packet = None
        self._drops_logged.clear()
        paho = client._client
        forward: Any = paho.on_connect  # aiomqtt's own handler

        def connected(mqtt: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
            # MQTT 5: never have more in flight than the broker's Receive Maximum, never
            # send a packet larger than its Maximum Packet Size (it would disconnect us).
            receive_maximum = getattr(props, "ReceiveMaximum", None)
            if isinstance(receive_maximum, int) and receive_maximum > 0:
                self._window = min(PUBLISH_WINDOW, receive_maximum)
            max_packet = getattr(props, "MaximumPacketSize", None)
            if isinstance(max_packet, int) and max_packet > 0:
                self._max_packet = max_packet
            forward(mqtt, userdata, flags, reason, props)

        paho.on_connect = connected
        handle_packet: Any = paho._packet_handle
        loop = asyncio.get_running_loop()

        def heard() -> Any:
            # paho keeps no record of when the broker last spoke (it resets its own on
            # every PINGREQ), so the link watchdog keeps one here.
            self._heard = loop.time()
            return handle_packet()

        paho._packet_handle = heard  # type: ignore[method-assign]
        return client

    async def set_source(self, state: str) -> None:
        """Record the WinCC source state (``up``/``down``) for the status.

        Returns at once: the session's own task publishes it, the latest state winning,
        so a poller never waits for the broker (a frozen one would stop polling).
        """
        if state == self._source:
            return
        self._source = state
        self._status_due.set()

    async def _keep_status(self, client: aiomqtt.Client) -> None:
        """Publish the status whenever the source state changed since it was published."""
        while True:
            await self._status_due.wait()
            self._status_due.clear()
            if self._published_source != self._source:
                # No time limit: a dead link ends this task through the watchdog.
                await self._publish_status(client, "online", wait=math.inf)

    async def _publish_status(
        self, client: aiomqtt.Client, state: str, wait: float | None = None
    ) -> None:
        """Publish the status; ``wait`` bounds the wait for the acknowledgement (aiomqtt's
        default when None)."""
        self._published_source = self._source
        payload = status_payload(state, self._since_ms, version=__version__, source=self._source)
        await client.publish(self._status_topic, payload, qos=1, retain=True, timeout=wait)

    async def run(self) -> None:
        """Connect, publish, reconnect, until ``stop()`` has drained the buffer."""
        backoff = Backoff(base=0.5, cap=RECONNECT_CAP)
        down_logged = False
        while True:
            try:
                async with self._new_client() as client:
                    self._client = client
                    try:
                        backoff.reset()
                        down_logged = False
                        self._since_ms = now_ms()
                        self._heard = asyncio.get_running_loop().time()
                        await self._publish_status(client, "online")
                        for topic in self._subscriptions:
                            await client.subscribe(topic, qos=1)
                        self.connected.set()
                        self._status_due.set()  # in case it changed while subscribing
                        log.info(
                            "connected to broker %s as %s", self._where(), self._settings.client_id
                        )
                        finished = await self._serve(client)
                        if finished:
                            await self._publish_status(client, "offline")
                            log.info("status set to offline, disconnecting from the broker")
                            return
                    except asyncio.CancelledError:
                        # Stopped before the broker took everything (or the gateway
                        # failed): a normal DISCONNECT would make the broker discard the
                        # will and keep "online" retained for a gateway that is gone.
                        await self._leave(client)
                        raise
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

        The tasks (publish, receive, status, link watchdog) are owned here: whichever ends
        first ends the others, and its error (the MqttError of a lost link) propagates as
        itself, not wrapped in a group.
        """
        drainer = asyncio.create_task(self._drain(client), name="mqtt-publish")
        tasks = {
            drainer,
            asyncio.create_task(self._receive(client), name="mqtt-receive"),
            asyncio.create_task(self._keep_status(client), name="mqtt-status"),
            asyncio.create_task(self._watch_link(client), name="mqtt-watchdog"),
        }
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks)
        for task in done:
            task.result()
        return drainer in done

    async def _watch_link(self, client: aiomqtt.Client) -> None:
        """Give the link up when the broker has been silent for a keepalive.

        paho alone notices a dead link only after about two keepalives; here a PINGREQ
        goes out after half a keepalive of silence, and a keepalive without any packet
        from the broker closes the connection (raising MqttError, so the session
        reconnects and resends what was not acknowledged).
        """
        keepalive = float(self._settings.keepalive)
        loop = asyncio.get_running_loop()
        pinged_after = -1.0
        while True:
            await asyncio.sleep(keepalive / 4)
            silent = loop.time() - self._heard
            if silent >= keepalive:
                self._close_link(client)
                raise aiomqtt.MqttError(
                    f"no answer from the broker for {silent:.1f} s (keepalive {keepalive:g} s)"
                )
            if silent >= keepalive / 2 and pinged_after != self._heard:
                pinged_after = self._heard
                client._client._send_pingreq()

    def _close_link(self, client: aiomqtt.Client) -> None:
        """Close the connection without a DISCONNECT packet: nothing more is written to a
        link that does not move, and the broker, seeing it drop, sends the will."""
        client._client._sock_close()
        if not client._disconnected.done():
            client._disconnected.set_result(None)  # aiomqtt's exit then sends nothing

    async def _leave(self, client: aiomqtt.Client) -> None:
        """Leave a link that could not be drained so the retained status says offline.

        Best effort within ``LEAVE_TIMEOUT``: publish offline; if the broker did not
        acknowledge it, disconnect asking for the will (MQTT 5 reason code 0x04) or, with
        MQTT 3.1.1, close the connection without DISCONNECT, which also sends the will.
        """
        paho = client._client
        payload = status_payload(
            "offline", self._since_ms, version=__version__, source=self._source
        )
        try:
            info = paho.publish(self._status_topic, payload, 1, True)
            # paho signals the acknowledgement to threads only; one waits for it here.
            await asyncio.to_thread(info.wait_for_publish, LEAVE_TIMEOUT)
            if info.is_published():
                log.info("status set to offline, disconnecting from the broker")
                return  # aiomqtt's exit sends a normal DISCONNECT
        except (ValueError, RuntimeError) as exc:
            log.debug("offline status not published: %s", exc)
        if self._settings.protocol == 5:
            paho.disconnect(
                reasoncode=ReasonCode(PacketTypes.DISCONNECT, "Disconnect with will message")
            )
            await asyncio.wait({client._disconnected}, timeout=LEAVE_TIMEOUT)
        self._close_link(client)
        log.info("disconnected without draining; the broker sets the status offline (will)")

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
                self._send(paho, batch, in_flight)
        finally:
            paho.on_publish = forward
            if in_flight:
                self._buffer.requeue(sorted(in_flight.values(), key=lambda item: item[0]))

    def _send(
        self, paho: mqtt_client.Client, batch: list[Queued], in_flight: dict[int, Queued]
    ) -> None:
        """Hand a batch to paho; what the broker can never take is dropped on the way."""
        for index, queued in enumerate(batch):
            _, message = queued
            problem = self._unsendable(message)
            if problem is not None:
                self._drop(queued, *problem)
                continue
            try:
                info = paho.publish(message.topic, message.payload, message.qos, message.retain)
            except (ValueError, TypeError) as exc:  # paho refuses it, now and always
                self._drop(queued, "invalid", str(exc))
                continue
            if info.rc != mqtt_client.MQTT_ERR_SUCCESS:
                self._buffer.requeue(batch[index:])  # this one and the rest, in order
                raise aiomqtt.MqttCodeError(info.rc, "could not publish")
            if info.is_published():  # QoS 0, written at once
                self._buffer.ack([queued])
                self.published += 1
            else:
                in_flight[info.mid] = queued

    def _unsendable(self, message: Message) -> tuple[str, str] | None:
        """Why the broker could never take ``message`` (reason, detail), or None."""
        try:
            topic = message.topic.encode("utf-8")
        except UnicodeEncodeError:
            return "invalid", "topic is not valid UTF-8"
        if len(topic) > MAX_TOPIC_BYTES:
            return "too_large", f"topic of {len(topic)} bytes, MQTT allows {MAX_TOPIC_BYTES}"
        if self._max_packet is not None:
            size = publish_packet_size(
                topic, message.payload, message.qos, mqtt5=self._settings.protocol == 5
            )
            if size > self._max_packet:
                return "too_large", (
                    f"packet of {size} bytes, the broker's maximum packet size is "
                    f"{self._max_packet}"
                )
        return None

    def _drop(self, queued: Queued, reason: str, detail: str) -> None:
        """Remove a message the broker can never take, so it never blocks the ones behind
        it (it would be first in line again after every reconnect or restart); counted,
        and logged once per reason and connection."""
        self._buffer.ack([queued])
        self.dropped[reason] += 1
        if reason not in self._drops_logged:
            self._drops_logged.add(reason)
            log.error(
                "message on %s dropped, the broker cannot take it: %s (further drops for "
                "this reason are counted in wincc_gateway_samples_dropped_total{reason=%r})",
                queued[1].topic[:200],
                detail,
                reason,
            )

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
