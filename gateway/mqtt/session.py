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

Inbound messages leave the session as ``Inbound`` values stamped with their arrival;
answers come in as plain values and get their MQTT 5 properties here. What aiomqtt offers
no public way to do is in ``gateway.mqtt.link``, the pipelined publishing of the buffer in
``gateway.mqtt.publisher``; this module uses aiomqtt's public interface only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import ssl
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.backoff import Backoff
from gateway.buffer.outbox import DurableBuffer
from gateway.buffer.store import Message
from gateway.core.commands import Arrival, Inbound
from gateway.core.platforms import PLATFORMS
from gateway.core.rotation import Rotation
from gateway.core.shares import command_subscriptions
from gateway.core.timestamps import now_ms
from gateway.errors import MqttUnavailable
from gateway.formats.base import OutputFormat, Status, Watched
from gateway.mqtt.cloud import LoginSource, alpn_protocols, pacer_for, static_login
from gateway.mqtt.link import Link
from gateway.mqtt.publisher import Publisher
from gateway.tasks import first_to_end

if TYPE_CHECKING:
    from gateway.mqtt_settings import MqttSettings

log = logging.getLogger(__name__)

MessageHandler = Callable[[Inbound], None]
"""Takes an inbound message; must not wait, so the connection keeps being read."""

RECONNECT_CAP = 10.0
"""Longest wait between two connection attempts (full jitter below it)."""

TICK = 5.0
"""Seconds between two calls of the format's ``on_tick`` while connected (its periodic
report of the gateway's own state, such as the Sparkplug buffer depth)."""

LEAVE_TIMEOUT = 1.0
"""Seconds a stop that could not drain gives the offline status, then the disconnect, to
reach the broker before the connection is simply closed (which also sends the will)."""


class Rejoin(MqttUnavailable):
    """The session left the broker on purpose (the output format asked) and reconnects."""


def inbound_from(topic: str, payload: bytes, properties: Properties | None) -> Inbound:
    """The message as plain values, stamped with its arrival now, with its MQTT 5
    properties (paho sets an attribute only for a property the message carries)."""
    expiry = getattr(properties, "MessageExpiryInterval", None)
    arrival = Arrival(time.monotonic(), now_ms(), int(expiry) if expiry is not None else None)
    if properties is None:
        return Inbound(topic, payload, arrival)
    user = dict(getattr(properties, "UserProperty", None) or [])
    return Inbound(
        topic,
        payload,
        arrival,
        response_topic=getattr(properties, "ResponseTopic", None),
        correlation_data=getattr(properties, "CorrelationData", None),
        sender=user.get("client_id") or user.get("clientid"),
    )


def build_tls_context(settings: MqttSettings) -> ssl.SSLContext | None:
    """TLS for ``mqtts://``: the broker's CA, an optional client certificate (mTLS)."""
    if urlsplit(settings.urls[0]).scheme != "mqtts":  # one scheme for every node
        return None
    cafile = str(settings.ca_file) if settings.ca_file else None
    context = ssl.create_default_context(cafile=cafile)
    if settings.cert_file and settings.key_file:
        context.load_cert_chain(settings.cert_file, settings.key_file)
    if not settings.verify_tls:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # only behind the documented verify_tls = false
    alpn = alpn_protocols(settings)
    if alpn:
        context.set_alpn_protocols(alpn)
    return context


class MqttSession:
    """Owns the broker connection for the gateway's whole life."""

    def __init__(
        self,
        settings: MqttSettings,
        buffer: DurableBuffer,
        output: OutputFormat,
        *,
        on_message: MessageHandler | None = None,
        login: LoginSource | None = None,
        share_group: str | None = None,
    ) -> None:
        self._settings = settings
        self._share_group = share_group  # an instance of a pair shares its command filters
        self._said_shares = False
        self._login = login or static_login(settings)
        self._renew_after: float | None = None
        self._brokers = Rotation(settings.urls)
        self._buffer = buffer
        self._output = output
        self._on_message = on_message
        self._since_ms = now_ms()
        self._source = "unknown"
        self._published_source = self._source
        self._link: Link | None = None
        self._stopping = False
        self.giving_way = False
        """Set before cancelling ``run`` to leave with a normal DISCONNECT: no offline
        status, no will (the other instance of a pair is taking over)."""
        self.connected = asyncio.Event()
        self.reconnects = 0
        platform = PLATFORMS.get(settings.preset) if settings.preset else None
        self._connect_gap = platform.connect_gap if platform is not None else 0.0
        self.publisher = Publisher(
            buffer,
            mqtt5=settings.protocol == 5,
            finish=output.finish,
            pacer=pacer_for(settings),
            platform=platform,
        )
        self._status_due = asyncio.Event()
        self._own = asyncio.Lock()  # the format's own message sequences go out whole

    @property
    def published(self) -> int:
        """Messages of the buffer the broker acknowledged."""
        return self.publisher.published

    @property
    def refused(self) -> int:
        """Messages of the buffer the broker took but refused (MQTT 5 reason code)."""
        return self.publisher.refused

    @property
    def dropped(self) -> dict[str, int]:
        """Messages of the buffer the broker could never take, by reason."""
        return self.publisher.dropped

    def _new_link(self) -> Link:
        settings = self._settings
        parts = urlsplit(self._brokers.current)
        will = self._output.will(now_ms())
        login = self._login()
        self._renew_after = login.renew_after
        client = aiomqtt.Client(
            hostname=parts.hostname or "localhost",
            port=parts.port or (8883 if parts.scheme == "mqtts" else 1883),
            identifier=settings.client_id,
            username=login.username,
            password=login.password,
            protocol=(
                aiomqtt.ProtocolVersion.V5
                if settings.protocol == 5
                else aiomqtt.ProtocolVersion.V311
            ),
            will=aiomqtt.Will(will.topic, will.payload, qos=will.qos, retain=will.retain),
            keepalive=int(settings.keepalive),
            tls_context=build_tls_context(settings),
            max_inflight_messages=0,  # the publisher's window bounds what is in flight
            # A node that takes the TCP connection but never answers CONNECT (a cluster
            # node that lost its peers) is left within one keepalive for the next node.
            timeout=min(30.0, float(settings.keepalive)),
        )
        return Link(client)

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
        """Say so whenever the source state changed since it was last said, and give the
        format its tick every ``TICK`` seconds."""
        loop = asyncio.get_running_loop()
        next_tick = loop.time() + TICK
        while True:
            try:
                await asyncio.wait_for(self._status_due.wait(), max(0.0, next_tick - loop.time()))
            except TimeoutError:
                next_tick = loop.time() + TICK
                async with self._own:
                    ticked = self._output.on_tick(self._status("online"))
                    await self._publish_whole(client, ticked, wait=math.inf)
                continue
            self._status_due.clear()
            if self._published_source != self._source:
                self._published_source = self._source
                # No time limit: a dead link ends this task through the watchdog.
                async with self._own:
                    messages = self._output.on_source(self._status("online"))
                    await self._publish_whole(client, messages, wait=math.inf)

    def _status(self, state: Literal["online", "offline"]) -> Status:
        return Status(state, self._since_ms, self._source, len(self._buffer))

    async def _publish(
        self, client: aiomqtt.Client, message: Message, wait: float | None = None
    ) -> None:
        """Publish one message of the format's own (status, births), finished by the
        format as it is sent like the buffer's; ``wait`` bounds the wait for the
        acknowledgement (aiomqtt's default when None)."""
        finish = self._output.finish
        if finish is not None:  # no await before the publish: the wire keeps this order
            message = finish(message)
        self.publisher.count_own(len(message.payload))
        await client.publish(
            message.topic, message.payload, qos=message.qos, retain=message.retain, timeout=wait
        )

    async def _publish_whole(
        self, client: aiomqtt.Client, messages: list[Message], wait: float | None = None
    ) -> None:
        """Publish a sequence of the format's own messages (births) with no buffered data
        between them; a single message needs no holding back (a status waiting for its
        acknowledgement must not stall the data)."""
        with self.publisher.held() if len(messages) > 1 else contextlib.nullcontext():
            for message in messages:
                await self._publish(client, message, wait)

    async def run(self) -> None:
        """Connect, publish, reconnect, until ``stop()`` has drained the buffer."""
        backoff = Backoff(base=0.5, cap=RECONNECT_CAP)
        down_logged = False
        while True:
            try:
                link = self._new_link()
                async with link.client as client:
                    self._link = link
                    try:
                        backoff.reset()
                        self._brokers.succeeded()
                        down_logged = False
                        self._since_ms = now_ms()
                        link.heard = asyncio.get_running_loop().time()
                        self._published_source = self._source
                        async with self._own:
                            for message in self._output.on_connect(self._status("online")):
                                await self._publish(client, message)
                            self.publisher.gate(self._output.holding)
                        for topic in (*self._command_filters(link), *self._output.watched):
                            await client.subscribe(topic, qos=1)
                        self.connected.set()
                        self._status_due.set()  # in case it changed while subscribing
                        log.info(
                            "connected to broker %s as %s", self._where(), self._settings.client_id
                        )
                        finished = await self._serve(link)
                        if finished:
                            await self._publish(
                                client, self._output.on_leave(self._status("offline"))
                            )
                            log.info("status set to offline, disconnecting from the broker")
                            return
                    except asyncio.CancelledError:
                        # Stopped before the broker took everything (or the gateway
                        # failed): a normal DISCONNECT would make the broker discard the
                        # will and keep "online" retained for a gateway that is gone.
                        # Giving way to the other instance of a pair, it is what is
                        # wanted: the status is the one that is online now.
                        if not self.giving_way:
                            await self._leave(link)
                        raise
            except (aiomqtt.MqttError, MqttUnavailable) as exc:
                self.connected.clear()
                self._link = None
                if self._stopping:
                    log.warning(
                        "broker lost while stopping; %d messages not delivered", len(self._buffer)
                    )
                    return
                self.reconnects += 1
                if isinstance(exc, Rejoin):
                    log.info("%s; connecting again", exc)
                    await asyncio.sleep(max(backoff.next_delay(), self._connect_gap))
                    continue
                await self._next_broker(exc, backoff, quiet=down_logged)
                down_logged = True
            finally:
                self.connected.clear()
                self._link = None

    def _command_filters(self, link: Link) -> tuple[str, ...]:
        """The command filters, shared by the two instances of a pair where the broker
        has shared subscriptions; said once which."""
        filters, said = command_subscriptions(
            self._output.commands.filters,
            self._share_group,
            mqtt5=self._settings.protocol == 5,
            broker_shares=link.shared_subscriptions,
        )
        if said is not None and not self._said_shares:
            self._said_shares = True
            log.info("%s", said)
        return filters

    async def _serve(self, link: Link) -> bool:
        """Publish and receive until the buffer is closed and empty (True) or an error.

        The tasks (publish, receive, status, link watchdog) are owned here: whichever ends
        first ends the others, and its error (the MqttError or MqttUnavailable of a lost
        link) propagates as itself, not wrapped in a group.
        """
        drainer = asyncio.create_task(link.publish(self.publisher), name="mqtt-publish")
        watchdog = link.watch(float(self._settings.keepalive))
        tasks = {
            drainer,
            asyncio.create_task(self._receive(link.client), name="mqtt-receive"),
            asyncio.create_task(self._keep_status(link.client), name="mqtt-status"),
            asyncio.create_task(watchdog, name="mqtt-watchdog"),
        }
        if self._renew_after is not None:
            tasks.add(asyncio.create_task(self._renew(self._renew_after), name="mqtt-renew"))
        done = await first_to_end(tasks)
        return drainer in done

    @staticmethod
    async def _renew(after: float) -> None:
        """End the connection before its login expires (an Azure SAS token): the
        session connects again at once with a fresh one; what was in flight is resent."""
        await asyncio.sleep(after)
        raise Rejoin("the login token is due for renewal")

    async def _leave(self, link: Link) -> None:
        """Leave a link that could not be drained so the retained status says offline:
        the broker takes the offline status within ``LEAVE_TIMEOUT``, or sends the will."""
        last = self._output.on_leave(self._status("offline"))
        mqtt5 = self._settings.protocol == 5
        if await link.leave(last, mqtt5=mqtt5, wait=LEAVE_TIMEOUT):
            log.info("status set to offline, disconnecting from the broker")
            return
        log.info("disconnected without draining; the broker sets the status offline (will)")

    async def _receive(self, client: aiomqtt.Client) -> None:
        """Hand inbound messages on as plain values, those on the format's watched topics
        to the format; raises MqttError when the link drops, MqttUnavailable when the
        format makes the node leave."""
        async for message in client.messages:
            payload = message.payload
            body = bytes(payload) if isinstance(payload, bytes | bytearray) else b""
            topic = str(message.topic)
            watched = self._output.observe(topic, body)
            if watched is not None:
                await self._follow(client, watched)
            elif self._on_message is not None:
                self._on_message(inbound_from(topic, body, message.properties))

    async def _follow(self, client: aiomqtt.Client, watched: Watched) -> None:
        """Do what the format made of a watched message: publish its messages ahead of
        the buffered data, let the data go or keep it back, or leave and connect again."""
        async with self._own:
            await self._publish_whole(client, watched.publish)
            self.publisher.gate(self._output.holding)
            if watched.leave:
                await self._publish(client, self._output.on_leave(self._status("offline")))
                raise Rejoin("left the broker as the output format asked")

    async def publish_own(self, messages: list[Message]) -> None:
        """Publish messages of the format's own (births after the tag lists changed or on
        request) now, buffered data waiting until the last is out. Offline, or if the
        link breaks, there is nothing to do: the next connection starts with
        ``on_connect``, which says the same."""
        link = self._link
        if link is None or not messages:
            return
        try:
            async with self._own:
                await self._publish_whole(link.client, messages)
        except aiomqtt.MqttError as exc:
            log.info("broker lost while publishing the format's announcements: %s", exc)

    async def publish_now(self, message: Message, *, correlation_data: bytes | None = None) -> None:
        """Publish outside the buffer (command answers), with the MQTT 5 correlation data
        when there is one; raises MqttUnavailable when offline or the link broke."""
        link = self._link
        if link is None:
            raise MqttUnavailable("not connected to the broker")
        properties = None
        if correlation_data is not None and self._settings.protocol == 5:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.CorrelationData = correlation_data
        self.publisher.count_own(len(message.payload))
        try:
            await link.client.publish(
                message.topic, message.payload, message.qos, message.retain, properties=properties
            )
        except aiomqtt.MqttError as exc:
            raise MqttUnavailable(str(exc)) from exc

    def stop(self) -> None:
        """Finish: no more messages will come; ``run`` returns once they are published."""
        self._stopping = True
        self._buffer.close_for_new()

    async def _next_broker(self, exc: Exception, backoff: Backoff, *, quiet: bool) -> None:
        """Move to the next broker node at once; wait (jittered backoff) only once every
        node of the cluster failed in a row. ``quiet`` after the first warning of an outage."""
        failed = self._where()
        round_over = self._brokers.failed()
        if quiet:
            log.debug("broker %s unreachable: %s; trying %s", failed, exc, self._where())
        elif self._brokers.several:
            log.warning("broker %s unreachable: %s; trying %s", failed, exc, self._where())
        else:
            log.warning("broker %s unreachable: %s; retrying", failed, exc)
        # AWS IoT Core throttles a client id connecting more than once a second.
        await asyncio.sleep(max(backoff.next_delay() if round_over else 0.0, self._connect_gap))

    def _where(self) -> str:
        parts = urlsplit(self._brokers.current)
        return f"{parts.scheme}://{parts.hostname}:{parts.port or ''}".rstrip(":")
