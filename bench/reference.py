"""Reference rates of plain MQTT clients on the bench's broker, to scale the gateway's.

The same broker, machine and subscriber as the gateway's runs, the same QoS 1 and MQTT 5,
and payloads shaped like the gateway's samples. The subscriber must receive every
message: that also proves it keeps up with rates beyond the gateway's.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import orjson

from bench.processes import BenchError, Broker, find_tool, reaping
from bench.subscriber import Subscriber

PREFIX = "bench/ref"
PUB_MESSAGES = 100_000
SERIAL_MESSAGES = 10_000
GATHERED_MESSAGES = 20_000
GATHER = 100
PUB_INFLIGHT = 200
"""mosquitto_pub's window of QoS 1 messages in flight, as wide as the gateway's."""
PUB_DEFAULT_INFLIGHT = 20
"""mosquitto_pub's own default window: the C client as it is usually run."""
PUB_CHUNK = 50_000
"""Lines per mosquitto_pub process. mosquitto_pub 2.0.11 -l reads stdin far ahead of the
acknowledgements and disconnects early once more than 65,535 lines are queued (its last
message id wraps), so larger counts go through several processes in a row."""


@dataclass(frozen=True, slots=True)
class Reference:
    """One client's publish rate: messages acknowledged by the broker per second."""

    name: str
    description: str
    messages: int
    seconds: float
    received: int
    received_per_s: float  # at the subscriber, first to last receive stamp

    @property
    def per_s(self) -> float:
        """Messages per second."""
        return self.messages / self.seconds


def sample_payloads(count: int) -> list[bytes]:
    """Payloads like the gateway's samples, seq 1..count, so the subscriber can count them."""
    return [
        orjson.dumps(
            {
                "value": round(20.0 + (seq % 1000) / 10, 2),
                "quality": 128,
                "good": True,
                "ts": "2026-11-24T10:00:00.123Z",
                "seq": seq,
            }
        )
        for seq in range(1, count + 1)
    ]


def _mosquitto_pub(port: int, topic: str, count: int, inflight: int) -> float:
    """Seconds ``mosquitto_pub -l`` takes for ``count`` lines, start to last PUBACK."""
    payloads = sample_payloads(count)
    chunks = [
        b"\n".join(payloads[first : first + PUB_CHUNK]) + b"\n"
        for first in range(0, count, PUB_CHUNK)
    ]
    args = [
        find_tool("mosquitto_pub"),
        *("-h", "127.0.0.1", "-p", str(port), "-V", "mqttv5", "-q", "1"),
        *("-M", str(inflight), "-l", "-t", topic),
    ]
    started = time.perf_counter()
    for chunk in chunks:
        result = subprocess.run(args, input=chunk, capture_output=True, timeout=300, check=False)
        if result.returncode != 0:
            raise BenchError(f"mosquitto_pub failed: {result.stderr.decode(errors='replace')}")
    return time.perf_counter() - started


async def _aiomqtt(port: int, topic: str, count: int, gather: int) -> float:
    """Seconds aiomqtt takes to publish ``count`` messages, ``gather`` awaited at once."""
    payloads = sample_payloads(count)
    async with aiomqtt.Client(
        "127.0.0.1",
        port,
        identifier=f"bench-ref-{gather}",
        protocol=aiomqtt.ProtocolVersion.V5,
        max_inflight_messages=max(gather, 20),
    ) as client:
        client.pending_calls_threshold = gather * 2 + 10  # no warnings for a full window
        started = time.perf_counter()
        if gather == 1:
            for payload in payloads:
                await client.publish(topic, payload, qos=1)
        else:
            for first in range(0, count, gather):
                await asyncio.gather(
                    *(client.publish(topic, p, qos=1) for p in payloads[first : first + gather])
                )
        return time.perf_counter() - started


def measure_references(broker: Broker, folder: Path, *, scale: float = 1.0) -> list[Reference]:
    """mosquitto_pub -l with 200 and with 20 in flight, aiomqtt one by one and aiomqtt 100
    gathered, in that order.

    ``scale`` shrinks the message counts, for the smoke test.
    """
    pub_n, serial_n, gathered_n = (
        max(100, int(n * scale)) for n in (PUB_MESSAGES, SERIAL_MESSAGES, GATHERED_MESSAGES)
    )
    with reaping() as stack:
        subscriber = Subscriber(
            folder, port=broker.port, prefix=PREFIX, client_id="bench-ref-subscriber"
        )
        stack.callback(subscriber.stop)
        subscriber.start()
        runs: list[tuple[str, str, int, Callable[[str], float]]] = [
            (
                "mosquitto_pub",
                f"mosquitto_pub -l (C), QoS 1, {PUB_INFLIGHT} in flight",
                pub_n,
                lambda topic: _mosquitto_pub(broker.port, topic, pub_n, PUB_INFLIGHT),
            ),
            (
                "mosquitto_pub_default",
                f"mosquitto_pub -l (C), QoS 1, {PUB_DEFAULT_INFLIGHT} in flight",
                pub_n,
                lambda topic: _mosquitto_pub(broker.port, topic, pub_n, PUB_DEFAULT_INFLIGHT),
            ),
            (
                "aiomqtt_serial",
                "aiomqtt, QoS 1, await publish() one by one",
                serial_n,
                lambda topic: asyncio.run(_aiomqtt(broker.port, topic, serial_n, 1)),
            ),
            (
                "aiomqtt_gathered",
                f"aiomqtt, QoS 1, {GATHER} publish() gathered",
                gathered_n,
                lambda topic: asyncio.run(_aiomqtt(broker.port, topic, gathered_n, GATHER)),
            ),
        ]
        results = []
        collector = subscriber.collector
        for name, description, count, measure in runs:
            first = len(collector.message_recv_ns)
            seconds = measure(f"{PREFIX}/tags/{name}")
            subscriber.wait_quiet(idle=1.0, timeout=60.0)
            stamps = collector.message_recv_ns[first:]
            received = collector.distinct.get(name, 0)
            if received != count:
                raise BenchError(
                    f"reference {name}: the subscriber got {received:,} of {count:,} messages"
                )
            span = (stamps[-1] - stamps[0]) / 1e9 if len(stamps) > 1 else 0.0
            received_per_s = len(stamps) / span if span else 0.0
            results.append(Reference(name, description, count, seconds, received, received_per_s))
    return results
