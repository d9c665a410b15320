"""A broker cluster: the gateway publishes through one node, moves to the next when it dies,
and a subscriber on a third node receives every seq (NATS with JetStream, MQTT 3.1.1)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.simulator.server import Simulator
from tests.conftest import TlsFiles, logged
from tests.gateway_harness import running_gateway, settings_for
from tests.nats_cluster import nats_cluster
from tests.test_durability import final_seqs, lively, start_collector, stop_task

pytestmark = pytest.mark.slow

POLL = [{"name": "fast", "interval": "200ms", "tags": ["System1.Area1.Tank*.Level"]}]


async def test_node_killed_gateway_moves_to_the_next_and_no_seq_is_lost(
    simulator: Simulator, tls: TlsFiles, tmp_path: Path
) -> None:
    lively(simulator)
    async with nats_cluster(tmp_path / "nats") as (a, b, c):
        collector, task = await start_collector(c)  # type: ignore[arg-type]
        config = settings_for(simulator, a, tls, tmp_path, poll=POLL)  # type: ignore[arg-type]
        config["mqtt"].update(url=[a.url, b.url], protocol=311, keepalive="5s")
        try:
            with logged("gateway.mqtt.session", f"connected to broker {b.url}") as on_b:
                async with running_gateway(config) as gateway:
                    await collector.wait_until(lambda: len(collector.order) > 50)
                    assert not on_b.is_set()  # the first node that answers: A
                    await a.kill()
                    await asyncio.wait_for(on_b.wait(), 30)
                    seen = len(collector.order)
                    await collector.wait_until(lambda: len(collector.order) > seen + 50, 30)
                    assert gateway.session.connected.is_set()
                    # what queued up during the failover is taken by B while polling goes on
                    # (slowly while the cluster recovers), so the stop has nothing left to drain
                    async with asyncio.timeout(30):
                        while gateway.buffer.depth:  # noqa: ASYNC110 - no event for a depth
                            await asyncio.sleep(0.05)
            final = final_seqs(tmp_path / "buffer.db")
            assert sum(final.values()) > 100
            await collector.wait_complete(final)
        finally:
            await stop_task(task)
    assert collector.reused() == []
