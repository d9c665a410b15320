"""A plain subscriber for tools beside the gateway (the demo's view): messages under a
prefix as (topic, payload) pairs, so their callers need no MQTT library of their own."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import aiomqtt


@contextlib.asynccontextmanager
async def watch(
    host: str, port: int, prefix: str, client_id: str
) -> AsyncIterator[AsyncIterator[tuple[str, bytes]]]:
    """Connect (MQTT 3.1.1, QoS 0), subscribe to ``prefix/#`` and yield the messages."""
    client = aiomqtt.Client(host, port, identifier=client_id, protocol=aiomqtt.ProtocolVersion.V311)
    async with client:
        await client.subscribe(f"{prefix}/#", qos=0)
        yield _messages(client)


async def _messages(client: aiomqtt.Client) -> AsyncIterator[tuple[str, bytes]]:
    async for message in client.messages:
        payload = message.payload
        yield message.topic.value, bytes(payload) if isinstance(payload, bytes | bytearray) else b""
