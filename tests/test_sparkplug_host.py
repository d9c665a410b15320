"""A Sparkplug node with a primary host, end to end over a real mosquitto: the host's
retained STATE, published here, decides when births and data go out."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiomqtt
import orjson
import pytest
from pysparkplug import DBirth, DData

from gateway.simulator.server import Simulator
from tests.conftest import Mosquitto, TlsFiles, logged, subscribe
from tests.gateway_harness import running_gateway
from tests.test_sparkplug import ALL, NODE, SEQUENCED, bd_seq, kind, of, sparkplug, until

pytestmark = pytest.mark.slow

STATE = "spBv1.0/STATE/scada"


def state(online: bool, timestamp: int) -> bytes:
    return orjson.dumps({"online": online, "timestamp": timestamp})


async def test_births_wait_for_the_host_online_and_a_newer_offline_makes_the_node_leave(
    simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    simulator.faults.change_rate = 5.0
    poll = [{"name": "fast", "interval": "100ms", "tags": ["System1.Area1.Tank1.*"]}]
    config = sparkplug(
        simulator, mosquitto, tls, tmp_path, poll=poll, sparkplug={**NODE, "host_id": "scada"}
    )
    async with (
        aiomqtt.Client("127.0.0.1", mosquitto.port) as host,
        subscribe(mosquitto, ALL) as sub,
    ):
        await host.publish(STATE, state(False, 1_000), qos=1, retain=True)
        await sub.wait_for(lambda ms: bool(sub.on(STATE)))
        async with running_gateway(config) as gateway:
            # Offline retained: the data waits in the buffer, nothing of the node goes out.
            await until(lambda: len(gateway.buffer) >= 3)
            assert [m.topic for m in sub.messages] == [STATE]

            await host.publish(STATE, state(True, 2_000), qos=1, retain=True)
            await sub.wait_for(lambda ms: len(of("DDATA", ms)) >= 5)
            live = [m for m in sub.messages if kind(m) in SEQUENCED]
            assert [kind(m) for m in live[:2]] == ["NBIRTH", "DBIRTH"]
            birth = DBirth.decode(live[1].payload)
            held = DData.decode(of("DDATA", live)[0].payload, birth=birth)
            assert all(metric.is_historical for metric in held.metrics)  # waited for the host
            born = bd_seq(live[0])

            with logged("gateway.formats.sparkplug_host", "older than the last") as ignored:
                await host.publish(STATE, state(False, 1_500), qos=1, retain=True)
                await ignored.wait()
            seen = len(sub.messages)
            await sub.wait_for(lambda ms: bool(of("DDATA", ms[seen:])))  # data goes on
            assert of("NDEATH", sub.messages) == []

            seen = len(sub.messages)
            await host.publish(STATE, state(False, 3_000), qos=1, retain=True)
            await sub.wait_for(lambda ms: bool(of("NDEATH", ms[seen:])))
            (death,) = of("NDEATH", sub.messages[seen:])
            assert bd_seq(death) == born
            await until(lambda: gateway.session.reconnects >= 1)
            await asyncio.wait_for(gateway.session.connected.wait(), timeout=15)
            await until(lambda: len(gateway.buffer) >= 3)  # back, waiting for the host
            after_death = sub.messages[sub.messages.index(death) + 1 :]
            assert [m for m in after_death if kind(m) in SEQUENCED] == []

            seen = len(sub.messages)
            await host.publish(STATE, state(True, 4_000), qos=1, retain=True)
            await sub.wait_for(lambda ms: bool(of("DDATA", ms[seen:])))
            again = [m for m in sub.messages[seen:] if kind(m) in SEQUENCED]
            assert [kind(m) for m in again[:2]] == ["NBIRTH", "DBIRTH"]
            assert bd_seq(again[0]) == (born + 1) % 256
