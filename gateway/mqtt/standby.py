"""The standby instance of a gateway pair: watch the broker until it is this instance's
turn, claim it, and learn what the active instance last published.

Whose turn it is is decided through the broker. The active instance's status
(``P/status``, retained, with the will ``offline``) says whether it is there; when it says
offline (the will fired, or a clean stop), every standby publishes a retained claim
(``P/redundancy/claim``) and the claim the broker retained last wins: every subscriber sees
the claims in the broker's one order, so exactly one instance goes on. It then reads the
retained per-tag messages (``P/tags/#``) for every tag's last seq, and leaves this
connection; the gateway's own session starts after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from urllib.parse import urlsplit

import aiomqtt
import orjson

from gateway.backoff import Backoff
from gateway.core.rotation import Rotation
from gateway.core.timestamps import now_ms
from gateway.mqtt.session import build_tls_context
from gateway.mqtt_settings import MqttSettings
from gateway.takeover import Takeover, parse_retained

log = logging.getLogger(__name__)

QUIET = 1.0
"""Seconds without a retained status after subscribing that count as no active instance."""

SETTLE = 1.0
"""Seconds the claims must rest after this instance's own before the last one decides."""


class _Seen:
    """The status and claim as the standby last saw them."""

    def __init__(self) -> None:
        self.status: str | None = None
        self.claim: str | None = None
        self.mine_seen = False
        self.marker = False
        self.samples: dict[str, bytes] = {}
        self.changed = asyncio.Event()


class Standby:
    """Waits for this instance's turn on the broker of ``settings``."""

    def __init__(self, settings: MqttSettings, instance: str, takeover: float) -> None:
        self._settings = settings
        self._instance = instance
        self._takeover = takeover
        prefix = settings.topic_prefix
        self._status = f"{prefix}/status"
        self._claim = f"{prefix}/redundancy/claim"
        self._tags = f"{prefix}/tags/"
        self._marker = f"{prefix}/redundancy/sync/{instance}"
        self._brokers = Rotation(settings.urls)
        self.connected = False
        """Connected to the broker while waiting: this instance can take over."""

    async def wait_for_turn(self) -> Takeover:
        """Return once this instance is the active one, with what the broker retained."""
        backoff = Backoff(base=0.5, cap=10.0)
        said = False  # one warning per outage, not one per attempt
        while True:
            try:
                async with self._client() as client:
                    backoff.reset()
                    self.connected, said = True, False
                    return await self._watch(client)
            except aiomqtt.MqttError as exc:
                self.connected = False
                level = logging.DEBUG if said else logging.WARNING
                log.log(level, "standby: broker %s unreachable: %s", self._brokers.current, exc)
                said = True
                if self._brokers.failed():
                    await asyncio.sleep(backoff.next_delay())

    async def hold(self) -> str:
        """While this instance is active: return the name of another instance once it
        claims the turn (this one must give way), on a connection of its own."""
        backoff = Backoff(base=0.5, cap=10.0)
        while True:
            try:
                async with self._client("watch") as client:
                    await client.subscribe(self._claim, qos=1)
                    backoff.reset()
                    async for message in client.messages:
                        payload = message.payload if isinstance(message.payload, bytes) else b""
                        claimant = _claimant(payload)
                        if claimant is not None and claimant != self._instance:
                            return claimant
            except aiomqtt.MqttError as exc:
                log.debug("watching the claims: broker %s: %s", self._brokers.current, exc)
                if self._brokers.failed():
                    await asyncio.sleep(backoff.next_delay())

    def _client(self, role: str = "standby") -> aiomqtt.Client:
        settings = self._settings
        parts = urlsplit(self._brokers.current)
        return aiomqtt.Client(
            hostname=parts.hostname or "localhost",
            port=parts.port or (8883 if parts.scheme == "mqtts" else 1883),
            identifier=f"{settings.client_id}-{role}",  # client_id names the instance
            username=settings.username,
            password=settings.password.get_secret_value() if settings.password else None,
            protocol=(
                aiomqtt.ProtocolVersion.V5
                if settings.protocol == 5
                else aiomqtt.ProtocolVersion.V311
            ),
            keepalive=int(settings.keepalive),
            tls_context=build_tls_context(settings),
            timeout=min(30.0, float(settings.keepalive)),
        )

    async def _watch(self, client: aiomqtt.Client) -> Takeover:
        seen = _Seen()
        reader = asyncio.create_task(self._read(client, seen), name="standby-read")
        try:
            await client.subscribe(self._status, qos=1)
            await client.subscribe(self._claim, qos=1)
            await self._until(reader, seen, lambda: seen.status is not None, QUIET)
            while not await self._claimed(client, reader, seen):
                log.info("standby: instance %s took over; waiting", seen.claim)
                await self._until(reader, seen, lambda: seen.status == "online", self._takeover)
            await client.subscribe(self._tags + "#", qos=0)
            await client.subscribe(self._marker, qos=1)
            await client.publish(self._marker, b"", qos=1)  # after every retained message
            await self._until(reader, seen, lambda: seen.marker, self._takeover)
            if not seen.marker:  # going on without every retained seq could reuse one
                raise aiomqtt.MqttError("the broker did not hand over the retained messages")
            samples = {}
            for path, payload in seen.samples.items():
                sample = parse_retained(payload)
                if sample is not None:
                    samples[path] = sample
            return Takeover(samples)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await reader

    async def _claimed(
        self, client: aiomqtt.Client, reader: asyncio.Task[None], seen: _Seen
    ) -> bool:
        """Wait until the active instance is gone, claim, and say whether the claim won.

        A status online under this instance's own claim is stale (this instance lost the
        broker while active, and the broker, restarted, never sent the will): whoever is
        active holds the last claim, and this one is not active."""
        mine = self._instance
        await self._until(reader, seen, lambda: seen.status != "online" or seen.claim == mine, None)
        seen.mine_seen = False
        claim = orjson.dumps({"instance": self._instance, "at": now_ms()})
        await client.publish(self._claim, claim, qos=1, retain=True)
        await self._until(reader, seen, lambda: seen.mine_seen, self._takeover)
        while True:  # the claims rest for SETTLE: the last one seen decides
            seen.changed.clear()
            try:
                await asyncio.wait_for(self._changed(reader, seen), SETTLE)
            except TimeoutError:
                return seen.claim == self._instance

    async def _until(
        self,
        reader: asyncio.Task[None],
        seen: _Seen,
        condition: Callable[[], bool],
        most: float | None,
    ) -> None:
        """Wait until ``condition()`` holds, at most ``most`` seconds (then go on)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(most):
                while not condition():
                    seen.changed.clear()
                    await self._changed(reader, seen)

    @staticmethod
    async def _changed(reader: asyncio.Task[None], seen: _Seen) -> None:
        """The next message, or the reader's error (the link broke)."""
        waiter = asyncio.ensure_future(seen.changed.wait())
        try:
            await asyncio.wait({waiter, reader}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        if reader.done():
            reader.result()
            raise aiomqtt.MqttError("the standby's broker link ended")

    async def _read(self, client: aiomqtt.Client, seen: _Seen) -> None:
        async for message in client.messages:
            topic = str(message.topic)
            payload = message.payload if isinstance(message.payload, bytes) else b""
            if topic == self._status:
                with contextlib.suppress(orjson.JSONDecodeError, TypeError, AttributeError):
                    seen.status = str(orjson.loads(payload).get("state"))
            elif topic == self._claim:
                seen.claim = _claimant(payload)
                seen.mine_seen = seen.mine_seen or seen.claim == self._instance
            elif topic == self._marker:
                seen.marker = True
            elif topic.startswith(self._tags) and message.retain:
                seen.samples[topic.removeprefix(self._tags)] = payload
            seen.changed.set()


def _claimant(payload: bytes) -> str | None:
    """The instance a claim names; None for anything else."""
    try:
        instance = orjson.loads(payload).get("instance")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return instance if isinstance(instance, str) else None
