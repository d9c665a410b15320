"""One broker connection through aiomqtt, with the parts aiomqtt 2 keeps to itself.

The session needs what aiomqtt offers no public way to do: the broker's limits from its
CONNACK (MQTT 5 Receive Maximum, Maximum Packet Size, Shared Subscription Available), when
the broker last spoke, a PINGREQ now, closing the connection without DISCONNECT, a
DISCONNECT that asks for the will, handing paho's client to the pipelined publisher, a
short way for the acknowledgements of its messages, and reading the socket in bulk. All
of it is here.

paho decodes every PUBACK into a reason-code and a properties object and runs callbacks
under locks: at thousands of messages a second that was a third of the gateway's time.
The PUBACK of a buffered message (which paho never knew: the publisher builds those
packets itself) is settled here from its first bytes, packet identifier and reason code;
any other goes through paho as before.

Written for aiomqtt 2.5 and paho-mqtt 2.2: paho's VERSION2 callbacks and its private
``_packet_handle``, ``_handle_pubackcomp``, ``_in_packet``, ``_packet_read``,
``_sock_recv``, ``_loop_rc_handle``, ``_last_bytes_received``, ``_sock``,
``_send_pingreq`` and ``_sock_close``;
aiomqtt's private ``_client`` and ``_disconnected``. pyproject pins ``aiomqtt>=2.3,<3``
and ``paho-mqtt>=2.1,<2.3``, and ``tests/mqtt/test_publisher.py`` checks that these
parts are still there.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import aiomqtt
from paho.mqtt.client import MQTT_ERR_AGAIN, MQTT_ERR_NO_CONN, MQTT_ERR_SUCCESS
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from gateway.buffer.store import Message
from gateway.errors import MqttUnavailable
from gateway.mqtt.publisher import Publisher

log = logging.getLogger(__name__)


READ_SIZE = 65_536
"""Bytes asked of the socket at once; paho asks for one byte, then one, then the rest."""

READ_BURST = 10_000
"""Packets read per wake-up before the event loop gets a turn (the rest right after)."""


class _Received:
    """Bytes read from the socket that paho has not taken yet."""

    __slots__ = ("data", "pos")

    def __init__(self) -> None:
        self.data = b""
        self.pos = 0


PUBACK = 0x40
"""The first byte of a PUBACK packet."""

AckSettler = Callable[[int, int], bool]
"""Settles the PUBACK of a packet id with its reason code: False when it is not the
buffer's message (paho's own then)."""


def settle_pubacks(data: bytes, pos: int, settle: AckSettler) -> int:
    """Settle the run of whole PUBACK packets at ``pos`` in ``data``; where it ends.

    A PUBACK is ``0x40``, its length (2 in MQTT 3.1.1; in MQTT 5 up to 3 plus its
    properties, which a gateway has no use for), the packet id and, in MQTT 5, the
    reason code (0, success, when left out). The run stops at anything else, at a
    packet cut by the end of ``data``, and at the PUBACK of a message that is not the
    buffer's: paho reads those.
    """
    end = len(data)
    while pos + 4 <= end and data[pos] == PUBACK:
        length = data[pos + 1]
        if length < 2 or length > 127 or pos + 2 + length > end:
            break
        reason = data[pos + 4] if length > 2 else 0
        if not settle((data[pos + 2] << 8) | data[pos + 3], reason):
            break
        pos += 2 + length
    return pos


def _read_in_bulk(paho: Any, loop: asyncio.AbstractEventLoop, link: Link) -> None:
    """Make paho read the socket in large pieces and every packet that came, per wake-up.

    paho reads each packet with three ``recv`` calls (its type, its length, the rest),
    and per wake-up as many packets as it has messages in flight, which it does not know
    of for the buffer's (see ``gateway.mqtt.publisher``): one PUBACK per turn of the event
    loop. Here the socket is read 64 KiB at a time, and packets are taken until the
    socket has no more (at most ``READ_BURST``, then again on the next turn). Between
    two packets, a run of PUBACKs for the buffer's messages is settled here, without
    paho: its reading of each packet cost more than the rest of a message's way.
    """
    recv: Any = paho._sock_recv  # turns TLS want-read/write into BlockingIOError
    received = _Received()

    def sock_recv(size: int) -> bytes:
        data, pos = received.data, received.pos
        if pos >= len(data):
            data, pos = bytes(recv(READ_SIZE)), 0  # BlockingIOError when nothing came
            if not data:  # closed by the broker
                return data
            received.data = data
        chunk = data[pos : pos + size]
        received.pos = pos + len(chunk)
        return chunk

    def settled_here() -> bool | None:
        """Settle the PUBACKs waiting at a packet boundary, reading the socket first
        when all it gave was taken: whether there were any; None when nothing came."""
        publisher = link.publisher
        if publisher is None or paho._in_packet["command"] != 0:
            return False
        if received.pos >= len(received.data):
            try:
                data = bytes(recv(READ_SIZE))
            except BlockingIOError:
                return None
            except OSError:
                return False  # paho meets it again and handles it
            received.data, received.pos = data, 0
        pos = settle_pubacks(received.data, received.pos, publisher.note_ack)
        publisher.flush_acks()
        if pos == received.pos:
            return False
        received.pos = pos
        link.heard = loop.time()
        paho._last_bytes_received = time.monotonic()  # paho's keepalive: the broker spoke
        return True

    def loop_read(max_packets: int = 1) -> Any:
        for _ in range(READ_BURST):
            if paho._sock is None:
                return MQTT_ERR_NO_CONN
            settled = settled_here()
            if settled is None:
                return MQTT_ERR_SUCCESS
            if settled:
                continue
            rc = paho._packet_read()
            if rc == MQTT_ERR_AGAIN:
                return MQTT_ERR_SUCCESS
            if rc > 0:
                return paho._loop_rc_handle(rc)
        if received.pos < len(received.data):  # more packets read already: next turn
            loop.call_soon(_read_more, loop_read)
        return MQTT_ERR_SUCCESS

    paho._sock_recv = sock_recv
    paho.loop_read = loop_read


def _read_more(loop_read: Any) -> None:
    """Go on reading packets already received; a broken link shows on the next read."""
    try:
        loop_read()
    except OSError as exc:
        log.debug("reading from the broker failed: %s", exc)


class Link:
    """An aiomqtt client (not yet connected: ``async with link.client``) and what the
    session reads and does below aiomqtt's public interface."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client
        self.receive_maximum: int | None = None
        self.max_packet: int | None = None
        self.shared_subscriptions = True  # MQTT 5: absent from the CONNACK means available
        self.heard = 0.0  # event-loop time the broker last sent a packet
        paho = self._paho = client._client
        loop = asyncio.get_running_loop()
        forward: Any = paho.on_connect  # aiomqtt's own handler

        def connected(mqtt: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
            # MQTT 5: the publisher never has more in flight than the broker's Receive
            # Maximum, never sends a packet larger than its Maximum Packet Size (it would
            # disconnect us).
            receive_maximum = getattr(props, "ReceiveMaximum", None)
            if isinstance(receive_maximum, int) and receive_maximum > 0:
                self.receive_maximum = receive_maximum
            max_packet = getattr(props, "MaximumPacketSize", None)
            if isinstance(max_packet, int) and max_packet > 0:
                self.max_packet = max_packet
            self.shared_subscriptions = getattr(props, "SharedSubscriptionAvailable", 1) != 0
            forward(mqtt, userdata, flags, reason, props)

        paho.on_connect = connected
        handle_packet: Any = paho._packet_handle

        def heard() -> Any:
            # paho keeps no record of when the broker last spoke (it resets its own on
            # every PINGREQ), so the link watchdog keeps one here.
            self.heard = loop.time()
            return handle_packet()

        paho._packet_handle = heard  # type: ignore[method-assign]
        self.publisher: Publisher | None = None
        """The publisher draining the buffer over this link, while it does."""
        handle_ack: Any = paho._handle_pubackcomp

        def acknowledged(cmd: str) -> Any:
            packet = paho._in_packet["packet"]
            publisher = self.publisher
            if publisher is not None and cmd == "PUBACK" and len(packet) >= 2:
                mid = (packet[0] << 8) | packet[1]
                if publisher.settle(mid, packet[2] if len(packet) > 2 else 0):
                    return MQTT_ERR_SUCCESS
            return handle_ack(cmd)

        paho._handle_pubackcomp = acknowledged  # type: ignore[method-assign]
        _read_in_bulk(paho, loop, self)

    async def publish(self, publisher: Publisher) -> None:
        """Publish the buffer pipelined over this connection, within the broker's limits."""
        self.publisher = publisher
        try:
            await publisher.drain(
                self._paho, receive_maximum=self.receive_maximum, max_packet=self.max_packet
            )
        finally:
            self.publisher = None

    async def watch(self, keepalive: float) -> None:
        """Give the link up when the broker has been silent for a keepalive.

        paho alone notices a dead link only after about two keepalives; here a PINGREQ
        goes out after half a keepalive of silence, and a keepalive without any packet
        from the broker closes the connection (raising MqttUnavailable, so the session
        reconnects and resends what was not acknowledged).
        """
        loop = asyncio.get_running_loop()
        pinged_after = -1.0
        while True:
            await asyncio.sleep(keepalive / 4)
            silent = loop.time() - self.heard
            if silent >= keepalive:
                self.close()
                raise MqttUnavailable(
                    f"no answer from the broker for {silent:.1f} s (keepalive {keepalive:g} s)"
                )
            if silent >= keepalive / 2 and pinged_after != self.heard:
                pinged_after = self.heard
                self._paho._send_pingreq()

    def close(self) -> None:
        """Close the connection without a DISCONNECT packet: nothing more is written to a
        link that does not move, and the broker, seeing it drop, sends the will."""
        self._paho._sock_close()
        if not self.client._disconnected.done():
            self.client._disconnected.set_result(None)  # aiomqtt's exit then sends nothing

    async def leave(self, last: Message, *, mqtt5: bool, wait: float) -> bool:
        """Leave a link that could not be drained so the retained status says offline;
        True when the broker took ``last`` (aiomqtt's exit then sends a normal DISCONNECT).

        Best effort within ``wait`` seconds: publish it; if the broker did not acknowledge it,
        disconnect asking for the will (MQTT 5 reason code 0x04) or, with MQTT 3.1.1,
        close the connection without DISCONNECT, which also sends the will.
        """
        paho = self._paho
        try:
            info = paho.publish(last.topic, last.payload, last.qos, last.retain)
            # paho signals the acknowledgement to threads only; one waits for it here.
            await asyncio.to_thread(info.wait_for_publish, wait)
            if info.is_published():
                return True
        except (ValueError, RuntimeError) as exc:
            log.debug("offline status not published: %s", exc)
        if mqtt5:
            paho.disconnect(
                reasoncode=ReasonCode(PacketTypes.DISCONNECT, "Disconnect with will message")
            )
            await asyncio.wait({self.client._disconnected}, timeout=wait)
        self.close()
        return False
