"""Pipelined publishing of the buffer: a window of messages in flight, PUBACKs matched by
message id, what was in flight handed back when the link drops, and what the broker can
never take dropped instead of blocking the messages behind it.

aiomqtt's ``publish()`` awaits each acknowledgement and does bookkeeping linear in the
number pending, which caps a gateway near 2,000 messages a second; aiomqtt 2 offers no
pipelined publish of its own. So this adapter drives the paho client that aiomqtt keeps
(its I/O still runs on aiomqtt's event-loop callbacks) and puts its own ``on_publish``
callback in front of aiomqtt's, forwarding the acknowledgements of aiomqtt's own
publishes (status, command answers). While the session publishes a sequence of the
format's own (births), the buffer is ``held``: nothing of it goes out in between.
With a publish rate (``mqtt.publish_rate``, set by a cloud preset) a pacer
(``gateway.core.pacing``) keeps what goes out under it, the rest waiting in the buffer,
and a cloud platform's topic and payload rules count among what the broker can never take.

QoS 1 messages are written as PUBLISH packets built here (``gateway.mqtt.packets``) into
paho's outgoing queue, many in one write; their acknowledgements come back through
``settle``, called by the link. Written for aiomqtt 2.5 and paho-mqtt 2.2 (paho's
VERSION2 callbacks and its private ``_sock``, ``_mid_generate`` and ``_packet_queue``;
aiomqtt's private ``Client._client``); pyproject pins ``aiomqtt>=2.3,<3`` and
``paho-mqtt>=2.1,<2.3``, and ``tests/mqtt/test_publisher.py`` checks that the parts used
are still there.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from paho.mqtt import client as mqtt_client
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateway.buffer.store import Message, Queued
from gateway.core.pacing import Pacer
from gateway.core.platforms import Platform, payload_problem, topic_problem
from gateway.errors import MqttUnavailable
from gateway.mqtt.packets import publish_qos1

log = logging.getLogger(__name__)

PUBLISH_WINDOW = 1000
"""Messages in flight (sent, not yet acknowledged) at once: enough to keep the link full."""

MAX_TOPIC_BYTES = 65_535
"""Longest topic MQTT can carry (a 16-bit length), in UTF-8 bytes."""

MAX_REFUSED_TOPICS = 1000
"""Topics whose refusal by the broker is logged; beyond that refusals are only counted."""

DROP_REASONS = ("too_large", "invalid")
"""Why a message the broker can never take was dropped: its topic or packet exceeds what
MQTT or the broker allows, or the client library refuses it."""


class Outbox(Protocol):
    """Where the messages come from and go back to: the durable buffer."""

    async def take(self, most: int) -> list[Queued]:
        """Up to ``most`` messages, oldest first; ``[]`` once closed and empty."""

    def ack(self, batch: list[Queued]) -> None:
        """The broker has them (or they can never be sent): delete them."""

    def requeue(self, batch: list[Queued]) -> None:
        """Not acknowledged: back in front, in their order."""


REFUSED_FROM = 0x80
"""MQTT 5 reason codes from this one on say the broker refused the message."""


def _hand_over(paho: mqtt_client.Client, packets: list[bytes]) -> None:
    """Queue the built PUBLISH packets in paho as one write, in order, and forget them.

    paho's queue entry is marked QoS 1 so that paho reports nothing when it is written;
    the acknowledgements come back through ``Publisher.settle``.
    """
    if packets:
        paho._packet_queue(mqtt_client.PUBLISH, b"".join(packets), 0, 1)
        packets.clear()


def publish_packet_size(topic: bytes, payload: bytes, qos: int, *, mqtt5: bool) -> int:
    """Bytes of a PUBLISH packet without properties, as the broker's Maximum Packet
    Size counts them (fixed header included)."""
    remaining = 2 + len(topic) + (2 if qos else 0) + (1 if mqtt5 else 0) + len(payload)
    length_bytes = max(1, -(-remaining.bit_length() // 7))  # 7 bits per byte
    return 1 + length_bytes + remaining


class Publisher:
    """Publishes the outbox over one connection after another; counts what happened."""

    def __init__(
        self,
        outbox: Outbox,
        *,
        mqtt5: bool,
        finish: Callable[[Message], Message] | None = None,
        pacer: Pacer | None = None,
        platform: Platform | None = None,
    ) -> None:
        self._outbox = outbox
        self._mqtt5 = mqtt5
        self._finish = finish  # the output format's completion of a message as it is sent
        self._pacer = pacer  # the connection's publish rate limits
        self._platform = platform  # a cloud platform's topic and payload rules
        self._max_packet: int | None = None
        self._drops_logged: set[str] = set()
        self._refused_topics: set[str] = set()
        self.published = 0
        self.refused = 0
        self.dropped: dict[str, int] = dict.fromkeys(DROP_REASONS, 0)
        self._open = asyncio.Event()  # set while neither held nor gated
        self._open.set()
        self._holds = 0
        self._gated = False
        self._in_flight: dict[int, Queued] = {}  # message id -> message, while draining
        self._acked: list[Queued] = []  # noted by note_ack, not yet flushed
        self._room = asyncio.Event()  # set when an acknowledgement freed a place

    @contextmanager
    def held(self) -> Iterator[None]:
        """Send nothing of the outbox in this block: what must come first (births) goes
        out without buffered data between its messages."""
        self._holds += 1
        self._update()
        try:
            yield
        finally:
            self._holds -= 1
            self._update()

    def gate(self, closed: bool) -> None:
        """Keep the outbox back (``closed``) until opened again: the output format holds
        the data on this connection (a Sparkplug node waiting for its primary host)."""
        self._gated = closed
        self._update()

    def _update(self) -> None:
        if self._holds == 0 and not self._gated:
            self._open.set()
        else:
            self._open.clear()

    async def drain(
        self,
        paho: mqtt_client.Client,
        *,
        receive_maximum: int | None = None,
        max_packet: int | None = None,
    ) -> None:
        """Publish the outbox over a connected ``paho`` client until the outbox is closed
        and empty and everything is acknowledged; acknowledged messages are deleted, and
        what is unacknowledged when this ends (the link dropped: cancelled or raising)
        goes back in front.

        ``receive_maximum`` and ``max_packet`` are the broker's MQTT 5 limits from its
        CONNACK: never more in flight than the one, never a packet larger than the other
        (the broker would disconnect).
        """
        window = PUBLISH_WINDOW
        if receive_maximum is not None and receive_maximum > 0:
            window = min(PUBLISH_WINDOW, receive_maximum)
        self._max_packet = max_packet if max_packet is not None and max_packet > 0 else None
        self._drops_logged.clear()
        in_flight = self._in_flight = {}
        room = self._room
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
            self._acked.append(queued)
            self.flush_acks()

        paho.on_publish = acknowledged
        try:
            while True:
                free = window - len(in_flight)
                if free <= 0:
                    room.clear()
                    await room.wait()
                    continue
                await self._open.wait()
                if self._pacer is not None:
                    free = await self._paced(free)
                batch = await self._outbox.take(free)
                if not batch:  # stopping, and everything was taken
                    while in_flight:
                        room.clear()
                        await room.wait()
                    return
                if not self._open.is_set():  # held while waiting for data: in front again
                    self._outbox.requeue(batch)
                    continue
                pause = self._send(paho, batch, in_flight)
                if pause > 0:
                    await asyncio.sleep(pause)
        finally:
            self.flush_acks()
            paho.on_publish = forward
            self._in_flight = {}
            if in_flight:
                self._outbox.requeue(sorted(in_flight.values(), key=lambda item: item[0]))

    def settle(self, mid: int, reason: int = 0) -> bool:
        """The PUBACK for ``mid`` with its reason code: True when the message was the
        buffer's, now acknowledged (or refused, reason 0x80 and up); False for another's
        (aiomqtt's own), which paho's handler takes. The link calls this before paho
        decodes the packet, which costs more than the rest of an acknowledgement; paho
        never knew the QoS 1 messages built here."""
        if not self.note_ack(mid, reason):
            return False
        self.flush_acks()
        return True

    def note_ack(self, mid: int, reason: int = 0) -> bool:
        """``settle`` for one of a run of PUBACKs read together: the buffer hears of them
        all at once in ``flush_acks``, which must follow before anything else runs."""
        queued = self._in_flight.pop(mid, None)
        if queued is None:
            return False
        if reason >= REFUSED_FROM:
            self._refused(queued, ReasonCode(PacketTypes.PUBACK, identifier=reason))
        self._acked.append(queued)
        return True

    def flush_acks(self) -> None:
        """Acknowledge to the buffer what ``note_ack`` noted, and make room for more."""
        acked = self._acked
        if acked:
            self._acked = []
            self._outbox.ack(acked)
            self.published += len(acked)
            self._room.set()

    async def _paced(self, free: int) -> int:
        """How many of ``free`` may go now by the publish rate, once at least one may."""
        pacer = self._pacer
        assert pacer is not None
        while True:
            now = time.monotonic()
            room = pacer.room(now)
            if room > 0:
                return min(free, room)
            await asyncio.sleep(max(pacer.messages.wait(now), 0.001))

    def count_own(self, size: int) -> None:
        """A message of the session's own (status, command answer) goes out now: it
        counts against the publish rate, so the buffered data leaves room for it."""
        if self._pacer is not None:
            self._pacer.spend(time.monotonic(), size)

    def _send(
        self, paho: mqtt_client.Client, batch: list[Queued], in_flight: dict[int, Queued]
    ) -> float:
        """Hand a batch to paho; what the broker can never take is dropped on the way.
        Returns the seconds to wait when the publish rate stopped it: the rest of the
        batch is back in front.

        QoS 1 messages, nearly all of them, go as PUBLISH packets built here and handed
        to paho's outgoing queue together (``gateway.mqtt.packets``); the rest through
        paho's ``publish()``, in their place in the order.
        """
        finish, pacer = self._finish, self._pacer
        mqtt5 = self._mqtt5
        packets: list[bytes] = []  # QoS 1 packets built, not yet handed to paho
        for index, queued in enumerate(batch):
            if pacer is not None:  # before finishing it: a format may number what it sends
                now, size = time.monotonic(), len(queued[1].payload)
                pause = pacer.wait(now, size)
                if pause > 0:
                    _hand_over(paho, packets)
                    self._outbox.requeue(batch[index:])
                    return pause
                pacer.spend(now, size)
            message = queued[1] if finish is None else finish(queued[1])
            try:
                topic = message.topic.encode()
            except UnicodeEncodeError:
                self._drop(queued, "invalid", "topic is not valid UTF-8")
                continue
            problem = self._unsendable(message, topic)
            if problem is not None:
                self._drop(queued, *problem)
                continue
            if paho._sock is None:  # the link is gone: this one and the rest, in order
                self._outbox.requeue(batch[index:])
                code = mqtt_client.MQTT_ERR_NO_CONN
                raise MqttUnavailable(f"[code:{code}] {mqtt_client.error_string(code)}")
            if message.qos == 1:
                mid = paho._mid_generate()
                packets.append(
                    publish_qos1(topic, message.payload, mid, retain=message.retain, mqtt5=mqtt5)
                )
                in_flight[mid] = queued
                continue
            _hand_over(paho, packets)
            try:
                info = paho.publish(message.topic, message.payload, message.qos, message.retain)
            except (ValueError, TypeError) as exc:  # paho refuses it, now and always
                self._drop(queued, "invalid", str(exc))
                continue
            if info.rc != mqtt_client.MQTT_ERR_SUCCESS:
                self._outbox.requeue(batch[index:])  # this one and the rest, in order
                raise MqttUnavailable(f"[code:{info.rc}] {mqtt_client.error_string(info.rc)}")
            if info.is_published():  # QoS 0, written at once
                self._outbox.ack([queued])
                self.published += 1
            else:
                in_flight[info.mid] = queued
        _hand_over(paho, packets)
        return 0.0

    def _unsendable(self, message: Message, topic: bytes) -> tuple[str, str] | None:
        """Why the broker could never take ``message`` (reason, detail), or None;
        ``topic`` is its topic in UTF-8."""
        if not topic or b"+" in topic or b"#" in topic:
            return "invalid", f"{message.topic[:200]!r} is not a topic to publish to"
        if len(topic) > MAX_TOPIC_BYTES:
            return "too_large", f"topic of {len(topic)} bytes, MQTT allows {MAX_TOPIC_BYTES}"
        platform = self._platform
        if platform is not None:
            problem = topic_problem(platform, topic) or payload_problem(platform, message.payload)
            if problem is not None:
                return "too_large", problem
        if self._max_packet is not None:
            size = publish_packet_size(topic, message.payload, message.qos, mqtt5=self._mqtt5)
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
        self._outbox.ack([queued])
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
        if topic not in self._refused_topics and len(self._refused_topics) < MAX_REFUSED_TOPICS:
            self._refused_topics.add(topic)
            log.error("broker refused a message on %s: %s (check its ACL)", topic, reason)
