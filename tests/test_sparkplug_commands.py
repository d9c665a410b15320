"""Sparkplug commands end to end: a host's DCMD and NCMD -> real mosquitto -> gateway ->
simulator, and the result seen as the host sees it (DDATA, births), decoded by pysparkplug."""

from __future__ import annotations

from pathlib import Path

import aiomqtt
import pytest
from pysparkplug import DataType, DBirth, DData, Metric, NBirth, NCmd
from pysparkplug._protobuf import Payload as RawPayload

from gateway.core.timestamps import now_ms
from gateway.core.topics import tag_path
from gateway.simulator.server import Simulator
from tests.conftest import Mosquitto, Received, TlsFiles, logged, subscribe
from tests.gateway_harness import running_gateway
from tests.test_sparkplug import ALL, SETPOINT, bd_seq, kind, of, sparkplug, until

pytestmark = pytest.mark.slow

LEVEL = "System1.Area1.Tank1.Level"  # read, never writable here
NCMD_TOPIC = "spBv1.0/plant/NCMD/edge1"


def seq(message: Received) -> int:
    return int(RawPayload.FromString(message.payload).seq)


def values_of(messages: list[Received], birth: DBirth, name: str) -> list[object]:
    return [
        metric.value
        for message in of("DDATA", messages)
        for metric in DData.decode(message.payload, birth=birth).metrics
        if metric.name == tag_path(name)
    ]


async def test_dcmd_writes_come_back_as_ddata_refusals_are_audited_and_rebirth_restarts_seq(
    simulator: Simulator,
    mosquitto: Mosquitto,
    tls: TlsFiles,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Polled once an hour: a value in DDATA after the start comes from a write's read-back.
    poll = [{"name": "slow", "interval": "1h", "tags": ["System1.Area1.Tank1.*"]}]
    commands = {"writable": [SETPOINT], "rate_limit": 1000.0, "burst": 1000}
    config = sparkplug(simulator, mosquitto, tls, tmp_path, poll=poll, commands=commands)
    async with (
        subscribe(mosquitto, ALL) as sub,
        running_gateway(config) as gateway,
        aiomqtt.Client("127.0.0.1", mosquitto.port) as host,
    ):
        await sub.wait_for(lambda ms: bool(of("DDATA", ms)))  # the first poll is out
        dbirth = of("DBIRTH", sub.messages)[-1]
        device = dbirth.topic.split("/")[4]
        birth = DBirth.decode(dbirth.payload)
        alias = {m.name: m.alias for m in birth.metrics}
        level_before = gateway.decider.current(LEVEL)

        seen = len(sub.messages)
        dcmd = RawPayload(timestamp=now_ms())
        write = dcmd.metrics.add(alias=alias[tag_path(SETPOINT)], timestamp=now_ms())
        write.double_value = 42.5  # by alias only, as a host sends it: no name, no datatype
        refused = dcmd.metrics.add(name=tag_path(LEVEL), datatype=10, timestamp=now_ms())
        refused.double_value = 9.0  # by name, but not in commands.writable
        with logged("gateway.audit", "refused: tag is not in commands.writable") as audited:
            await host.publish(
                f"spBv1.0/plant/DCMD/edge1/{device}", dcmd.SerializeToString(), qos=1
            )
            await sub.wait_for(lambda ms: 42.5 in values_of(ms[seen:], birth, SETPOINT))
            await audited.wait()
        assert simulator.write_log == [(SETPOINT, 42.5)]
        assert gateway.decider.current(LEVEL) == level_before
        assert values_of(sub.messages[seen:], birth, LEVEL) == []
        assert gateway.commands.results == {"ok": 1, "refused": 1}
        first_nbirth = of("NBIRTH", sub.messages)[-1]

        seen = len(sub.messages)
        rebirth = NCmd(
            now_ms(), (Metric(now_ms(), "Node Control/Rebirth", DataType.BOOLEAN, value=True),)
        )
        await host.publish(NCMD_TOPIC, rebirth.encode(), qos=1)
        await sub.wait_for(lambda ms: bool(of("DBIRTH", ms[seen:])))
        again = len(sub.messages)
        write.double_value = 43.5
        await host.publish(f"spBv1.0/plant/DCMD/edge1/{device}", dcmd.SerializeToString(), qos=1)
        await sub.wait_for(lambda ms: 43.5 in values_of(ms[again:], birth, SETPOINT))
        await until(lambda: gateway.commands.results.get("refused") == 2)

    after = [m for m in sub.messages[seen:] if kind(m) in ("NBIRTH", "DBIRTH", "DDATA")]
    assert [kind(m) for m in after] == ["NBIRTH", "DBIRTH", "DDATA"]
    assert [seq(m) for m in after] == [0, 1, 2]
    assert bd_seq(after[0]) == bd_seq(first_nbirth)
    node = NBirth.decode(after[0].payload)
    assert ("Node Control/Rebirth", False) in [(m.name, m.value) for m in node.metrics]
    reborn = DBirth.decode(after[1].payload)
    declared = {m.name: m.value for m in reborn.metrics}
    assert declared[tag_path(SETPOINT)] == 42.5  # the birth declares the current value
    assert {m.name for m in reborn.metrics} == {m.name for m in birth.metrics}
    assert simulator.write_log == [(SETPOINT, 42.5), (SETPOINT, 43.5)]
    # Two refusals for one reason: both audited, logged once (nobody gets an answer).
    refusals = [
        r.getMessage()
        for r in caplog.records
        if r.name == "gateway.commands" and "not in commands.writable" in r.getMessage()
    ]
    assert len(refusals) == 1 and "logged once" in refusals[0]
