"""End to end, Sparkplug B: simulator (HTTPS) -> gateway -> real mosquitto -> a subscriber
that decodes everything with pysparkplug, a decoder we did not write."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pysparkplug import DBirth, DData, NBirth, NData, NDeath
from pysparkplug._protobuf import Payload as RawPayload

from gateway.core.timestamps import now_ms
from gateway.core.topics import tag_path
from gateway.simulator.server import Simulator
from tests.conftest import Mosquitto, Received, TlsFiles, subscribe
from tests.gateway_harness import GatewayProcess, running_gateway, settings_for
from tests.tcp_proxy import tcp_proxy

pytestmark = pytest.mark.slow

SETPOINT = "System1.Area1.Tank1.Setpoint"
NODE = {"group_id": "plant", "edge_node_id": "edge1"}
ALL = "spBv1.0/#"
SEQUENCED = ("NBIRTH", "DBIRTH", "DDATA", "NDATA", "DDEATH")


def sparkplug(
    simulator: Simulator, broker: Mosquitto, tls: TlsFiles, tmp_path: Path, **sections: Any
) -> dict[str, Any]:
    """A config publishing Sparkplug B (alarms off: they are not part of it)."""
    sections.setdefault("sparkplug", NODE)
    mqtt = {"payload": "sparkplug", **sections.pop("mqtt", {})}
    return settings_for(
        simulator, broker, tls, tmp_path, mqtt=mqtt, alarms={"enabled": False}, **sections
    )


def kind(message: Received) -> str:
    return message.topic.split("/")[2]


def of(kind_: str, messages: list[Received]) -> list[Received]:
    return [m for m in messages if kind(m) == kind_]


def bd_seq(message: Received) -> int:
    """The bdSeq of an NBIRTH or an NDEATH."""
    if kind(message) == "NDEATH":
        return int(NDeath.decode(message.payload).bd_seq_metric.value)  # type: ignore[arg-type]
    metrics = NBirth.decode(message.payload).metrics
    return int(next(m.value for m in metrics if m.name == "bdSeq"))  # type: ignore[arg-type]


def buffer_depths(messages: list[Received]) -> list[int]:
    """The buffer depths the node said in its NDATA (by the alias its NBIRTH gave)."""
    alias = None
    depths = []
    for message in messages:
        if kind(message) == "NBIRTH":
            metrics = NBirth.decode(message.payload).metrics
            alias = next(m.alias for m in metrics if m.name == "Gateway/Buffer Depth")
        elif kind(message) == "NDATA" and alias is not None:
            raw = RawPayload.FromString(message.payload)
            depths += [int(m.long_value) for m in raw.metrics if m.alias == alias]
    return depths


async def until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    """Wait until ``condition()`` holds (state of the gateway in this process)."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - the gateway offers no event for these
            await asyncio.sleep(0.02)


async def test_births_first_then_data_by_alias_with_seq_wrapping_and_quality(
    simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    simulator.faults.change_rate = 5.0  # every tag about five times a second
    patterns = ["Area1.Tank*.*", "Area1.Pump*.*", "Area2.Tank*.*", "Area2.Pump*.*"]
    poll = [
        {"name": f"g{i}", "interval": "50ms", "tags": [f"System1.{pattern}"]}
        for i, pattern in enumerate(patterns)
    ]
    sparkplug_section = {**NODE, "device": "group"}
    config = sparkplug(simulator, mosquitto, tls, tmp_path, poll=poll, sparkplug=sparkplug_section)
    async with subscribe(mosquitto, ALL) as sub:
        async with running_gateway(config) as gateway:
            groups = {poller.name: poller.tags for poller in gateway.pollers}
            await sub.wait_for(lambda ms: len(of("DDATA", ms)) > 320, timeout=60)
            simulator.faults.change_rate = 0.0
            await until(lambda: gateway.decider.current(SETPOINT) is not None)
            simulator.plant.force(SETPOINT, 7.5, now_ms=now_ms(), quality=0x08)
            await until(lambda: gateway.decider.current(SETPOINT) == (7.5, 0x08, False))
            await gateway.buffer.settle()
            await until(lambda: len(gateway.buffer) == 0)  # published: the broker has it
        await sub.wait_for(lambda ms: kind(ms[-1]) == "NDEATH")  # the clean stop says so

    messages = [m for m in sub.messages if kind(m) in SEQUENCED]
    assert all(m.topic.split("/")[3] == "edge1" for m in sub.messages)
    seqs = [RawPayload.FromString(m.payload).seq for m in messages]
    for index in range(1, len(messages)):
        expected = 0 if kind(messages[index]) == "NBIRTH" else (seqs[index - 1] + 1) % 256
        assert seqs[index] == expected, f"message {index} ({messages[index].topic})"
    assert len(messages) > 300 and 255 in seqs[:-1]  # a wrap, 255 -> 0, in the middle

    # The last NBIRTH's bdSeq is the one the NDEATH of the clean stop carries.
    assert bd_seq(of("NBIRTH", sub.messages)[-1]) == bd_seq(sub.messages[-1])

    # One DBIRTH per group, with every metric, before any DDATA of that device.
    births: dict[str, Received] = {}
    for message in of("DBIRTH", messages):
        births.setdefault(message.topic.split("/")[4], message)
    assert set(births) == set(groups)
    first_data = {}
    for index, message in enumerate(messages):
        if kind(message) == "DDATA":
            first_data.setdefault(message.topic.split("/")[4], index)
    for device, birth in births.items():
        assert messages.index(birth) < first_data[device]
    decoded = {device: DBirth.decode(birth.payload) for device, birth in births.items()}
    for device, birth in decoded.items():
        assert {m.name for m in birth.metrics} == {tag_path(n) for n in groups[device]}
        assert all(m.alias is not None and m.timestamp for m in birth.metrics)
    aliases = [m.alias for birth in decoded.values() for m in birth.metrics]
    assert len(aliases) == sum(len(tags) for tags in groups.values())
    node = NBirth.decode(of("NBIRTH", messages)[-1].payload)
    aliases += [m.alias for m in node.metrics if m.alias is not None]
    assert len(aliases) == len(set(aliases))  # unique in the node

    # Data carries aliases only: no name, no datatype, every metric timestamped.
    setpoint_alias = next(m.alias for m in decoded["g0"].metrics if m.name == tag_path(SETPOINT))
    bad = []
    for message in of("DDATA", messages):
        device = message.topic.split("/")[4]
        raw = RawPayload.FromString(message.payload)
        for metric in raw.metrics:
            assert not metric.HasField("name") and not metric.HasField("datatype")
            assert metric.HasField("timestamp")
            if metric.alias == setpoint_alias and metric.HasField("properties"):
                props = metric.properties
                bad.append(dict(zip(props.keys, [v.int_value for v in props.values], strict=True)))
        data = DData.decode(message.payload, birth=decoded[device])
        assert {m.name for m in data.metrics} <= {tag_path(n) for n in groups[device]}
    assert bad == [{"Quality": 0, "WinCC Quality": 8}]


async def test_sigkill_leaves_ndeath_with_the_births_bdseq_and_a_restart_counts_on(
    simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    config = sparkplug(simulator, mosquitto, tls, tmp_path, mqtt={"keepalive": "5s"})
    async with subscribe(mosquitto, ALL) as sub:
        killed = GatewayProcess(config, tmp_path)
        await killed.start()
        await sub.wait_for(lambda ms: bool(of("DDATA", ms)))
        born = bd_seq(of("NBIRTH", sub.messages)[-1])
        assert await killed.stop(signal.SIGKILL) == -signal.SIGKILL
        await sub.wait_for(lambda ms: bool(of("NDEATH", ms)))
        (death,) = of("NDEATH", sub.messages)
        assert bd_seq(death) == born
        assert (death.retain, death.properties is not None) == (False, True)

        seen = len(sub.messages)
        again = GatewayProcess(config, tmp_path)
        await again.start()
        await sub.wait_for(lambda ms: bool(of("DBIRTH", ms[seen:])))
        assert [bd_seq(m) for m in of("NBIRTH", sub.messages[seen:])][-1] == (born + 1) % 256
        assert await again.stop(signal.SIGTERM) == 0, again.stderr.decode()
        await sub.wait_for(lambda ms: len(of("NDEATH", ms)) == 2)
    assert bd_seq(of("NDEATH", sub.messages)[-1]) == (born + 1) % 256
    assert "Traceback" not in again.stderr.decode()


async def test_broker_outage_births_first_then_historical_data_in_time_order(
    simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    async with tcp_proxy("127.0.0.1", mosquitto.port) as proxy:
        poll = [{"name": "fast", "interval": "100ms", "tags": ["System1.Area1.Tank1.*"]}]
        config = sparkplug(simulator, mosquitto, tls, tmp_path, poll=poll)
        config["mqtt"]["url"] = f"mqtt://127.0.0.1:{proxy.port}"
        async with subscribe(mosquitto, ALL) as sub, running_gateway(config) as gateway:
            await sub.wait_for(lambda ms: bool(of("DDATA", ms)))
            proxy.stall()  # new connections hang until resumed: the broker is away
            proxy.cut()
            await sub.wait_for(lambda ms: bool(of("NDEATH", ms)))  # the will
            await until(lambda: not gateway.session.connected.is_set())
            values = [100.0 + step for step in range(10)]
            for value in values:
                simulator.plant.force(SETPOINT, value, now_ms=now_ms())
                await until(lambda v=value: gateway.decider.current(SETPOINT) == (v, 128, True))
            await gateway.buffer.settle()
            seen = len(sub.messages)
            proxy.resume()
            await sub.wait_for(lambda ms: len(of("DDATA", ms[seen:])) >= len(values))
            # The node says its buffer depth: what it held at birth, then drained.
            await sub.wait_for(lambda ms: 0 in buffer_depths(ms[seen:]))
    after = [m for m in sub.messages[seen:] if kind(m) in SEQUENCED]
    born = {m.name: m.value for m in NBirth.decode(after[0].payload).metrics}
    assert born["Gateway/Buffer Depth"] >= len(values)  # type: ignore[operator]
    assert [kind(m) for m in after[:2]] == ["NBIRTH", "DBIRTH"]
    birth = DBirth.decode(after[1].payload)
    setpoint = next(m for m in birth.metrics if m.name == tag_path(SETPOINT))
    assert setpoint.value == values[-1]  # the birth declares the current value
    samples = [
        (m.value, m.timestamp, m.is_historical)
        for message in of("DDATA", after)
        for m in DData.decode(message.payload, birth=birth).metrics
        if m.name == tag_path(SETPOINT)
    ]
    assert [value for value, _, _ in samples[: len(values)]] == values  # nothing lost, in order
    stamps = [stamp for _, stamp, _ in samples[: len(values)]]
    assert stamps == sorted(stamps)
    assert all(historical for _, _, historical in samples[: len(values)])


async def test_wincc_outage_kills_the_device_and_its_return_gives_birth_before_the_backfill(
    simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    poll = [{"name": "fast", "interval": "100ms", "tags": ["System1.Area1.Tank1.*"]}]
    config = sparkplug(simulator, mosquitto, tls, tmp_path, poll=poll)
    async with subscribe(mosquitto, ALL) as sub, running_gateway(config):
        await sub.wait_for(lambda ms: bool(of("DBIRTH", ms)))
        simulator.faults.down = True
        await sub.wait_for(lambda ms: bool(of("DDEATH", ms)))
        simulator.plant.force(SETPOINT, 55.5, now_ms=now_ms())  # only the archive sees it
        seen = len(sub.messages)
        simulator.faults.down = False
        await sub.wait_for(lambda ms: bool(of("DDATA", ms[seen:])))
    after = [m for m in sub.messages[seen:] if kind(m) in SEQUENCED]
    node = NBirth.decode(of("NBIRTH", sub.messages)[-1].payload)
    ndata = of("NDATA", sub.messages)
    raw = [metric for m in ndata for metric in RawPayload.FromString(m.payload).metrics]
    assert not any(metric.HasField("name") for metric in raw)  # by alias only
    links = [NData.decode(m.payload, birth=node).metrics[0] for m in ndata]
    assert {m.name for m in links} == {"Gateway/WinCC"}
    # lost, back; "up" at start too, unless WinCC answered before NBIRTH, which said so
    assert [m.value for m in links] in (["up", "down", "up"], ["down", "up"])
    assert [kind(m) for m in after[:3]] == ["NDATA", "DBIRTH", "DDATA"]
    birth = DBirth.decode(after[1].payload)
    (metric,) = DData.decode(after[2].payload, birth=birth).metrics
    assert (metric.name, metric.value, metric.is_historical) == (tag_path(SETPOINT), 55.5, True)
