"""End to end, Industrial Edge Databus: simulator -> gateway -> real mosquitto -> a
subscriber reading the Databus topics as a consumer app does."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.core.timestamps import now_ms
from gateway.simulator.server import Simulator
from tests.conftest import Mosquitto, Received, TlsFiles, subscribe
from tests.gateway_harness import running_gateway, settings_for
from tests.test_sparkplug import SETPOINT, until

pytestmark = pytest.mark.slow

STATUS = "ie/s/j/simatic/v1/wincc1/status"
METADATA = "ie/m/j/simatic/v1/wincc1/dp"


def values(messages: list[Received]) -> list[Received]:
    return [m for m in messages if m.topic.startswith("ie/d/j/simatic/v1/wincc1/dp/r/")]


async def test_metadata_first_then_values_by_id_and_status_as_birth_and_will(
    simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    poll = [{"name": "fast", "interval": "100ms", "tags": ["System1.Area1.Tank1.*"]}]
    config = settings_for(
        simulator,
        mosquitto,
        tls,
        tmp_path,
        poll=poll,
        mqtt={"payload": "databus"},
        databus={"app_instance": "wincc1"},
        alarms={"enabled": False},
    )
    async with subscribe(mosquitto, "ie/#") as sub:
        async with running_gateway(config) as gateway:
            await sub.wait_for(lambda ms: bool(values(ms)))
            simulator.plant.force(SETPOINT, 12.25, now_ms=now_ms(), quality=0x48)
            await until(lambda: gateway.decider.current(SETPOINT) == (12.25, 0x48, False))
            await gateway.buffer.settle()
            await until(lambda: len(gateway.buffer) == 0)
        await sub.wait_for(lambda ms: ms[-1].topic == STATUS)  # the clean stop says so

    topics = [m.topic for m in sub.messages]
    assert topics.index(METADATA) < topics.index(values(sub.messages)[0].topic)
    assert sub.on(STATUS)[0].json()["connector"] == {"status": "available"}
    assert sub.on(STATUS)[-1].json()["connector"] == {"status": "unavailable"}
    meta = sub.on(METADATA)[-1].json()
    (collection,) = meta["connections"][0]["dataPoints"]
    assert collection["name"] == "fast"
    by_id = {p["id"]: p for p in collection["dataPointDefinitions"]}
    setpoint = next(p for p in by_id.values() if p["name"] == SETPOINT)
    assert setpoint["dataType"] == "LReal"
    seqs = []
    seen = []
    for message in values(sub.messages):
        assert message.topic == collection["topic"]
        body = message.json()
        seqs.append(body["seq"])
        for val in body["vals"]:
            assert val["id"] in by_id and val["ts"].endswith("Z")
            if val["id"] == setpoint["id"]:
                seen.append((val["val"], val["qc"], val["qx"]))
    assert seqs == list(range(1, len(seqs) + 1))
    assert (12.25, 1, 0x48) in seen
