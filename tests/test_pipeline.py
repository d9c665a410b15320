"""End to end: simulator (HTTPS) -> gateway -> real mosquitto -> a test subscriber."""

from __future__ import annotations

import asyncio
import re
import signal
import ssl
from pathlib import Path

import aiomqtt
import pytest

from gateway.core.timestamps import now_ms
from gateway.core.topics import tag_path
from gateway.errors import WinCCUnsupported
from gateway.simulator.server import Simulator, SimulatorOptions
from tests.conftest import Mosquitto, Received, TlsFiles, subscribe
from tests.gateway_harness import (
    PREFIX,
    GatewayProcess,
    alarm_id_of,
    alarm_topic,
    one_tag_per_request,
    running_gateway,
    settings_for,
)

pytestmark = pytest.mark.slow

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
SETPOINT = "System1.Area1.Tank1.Setpoint"
MODE = "System1.Area1.Valve1.Mode"


def tag_topic(name: str) -> str:
    return f"{PREFIX}/tags/{tag_path(name)}"


def values_on(sub_messages: list[Received], name: str) -> list[object]:
    topic = tag_topic(name)
    return [m.json()["value"] for m in sub_messages if m.topic == topic]


def has_value(name: str, value: object):  # type: ignore[no-untyped-def]
    return lambda messages: value in values_on(messages, name)


async def test_status_online_then_offline_after_clean_stop(
    simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    config = settings_for(simulator, mosquitto, tls, tmp_path)
    async with subscribe(mosquitto, f"{PREFIX}/status") as sub:
        async with running_gateway(config):
            await sub.wait_for(lambda ms: any(m.json().get("source") == "up" for m in ms))
        await sub.wait_for(lambda ms: ms[-1].json()["state"] == "offline")
    online = [m.json() for m in sub.messages if m.json()["state"] == "online"]
    assert TS.match(online[0]["since"])
    assert online[0]["version"]
    assert online[-1]["source"] == "up"


async def test_every_tag_once_with_every_payload_field(
    simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    area1 = [name for name in simulator.plant.names if name.startswith("System1.Area1.")]
    topics = {tag_topic(name): name for name in area1}
    config = settings_for(simulator, mosquitto, tls, tmp_path)
    async with subscribe(mosquitto, f"{PREFIX}/tags/#") as sub, running_gateway(config):
        await sub.wait_for(lambda ms: {m.topic for m in ms} >= set(topics))
    assert {m.topic for m in sub.messages} == set(topics)
    for message in sub.messages:
        body = message.json()
        reading = simulator.plant.reading(topics[message.topic])
        assert set(body) == {"value", "quality", "good", "ts", "seq"}
        assert body["value"] == reading.value
        assert body["quality"] == 128
        assert body["good"] is True
        assert TS.match(body["ts"])
        assert body["seq"] == 1
    # Retained per config: a late subscriber gets the last sample of each tag at once.
    async with subscribe(mosquitto, tag_topic(SETPOINT)) as late:
        retained = await late.wait_for(lambda ms: len(ms) == 1)
    assert retained[0].retain


async def test_seq_rises_by_one_per_published_change(
    simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    config = settings_for(simulator, mosquitto, tls, tmp_path)
    async with subscribe(mosquitto, f"{PREFIX}/tags/#") as sub, running_gateway(config):
        await sub.wait_for(lambda ms: len(values_on(ms, SETPOINT)) == 1)
        for value in (11.0, 12.0, 13.0):
            simulator.plant.force(SETPOINT, value, now_ms=now_ms())
            await sub.wait_for(has_value(SETPOINT, value))
        simulator.plant.force(MODE, "manual", now_ms=now_ms())
        await sub.wait_for(has_value(MODE, "manual"))
    setpoints = [m.json() for m in sub.on(tag_topic(SETPOINT))]
    assert [body["seq"] for body in setpoints] == [1, 2, 3, 4]
    assert [body["value"] for body in setpoints][1:] == [11.0, 12.0, 13.0]
    assert [m.json()["seq"] for m in sub.on(tag_topic(MODE))] == [1, 2]


async def test_deadband_suppresses_small_changes(
    simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    poll = [
        {"name": "band", "interval": "100ms", "tags": [SETPOINT], "deadband": 1.0},
        {"name": "marker", "interval": "100ms", "tags": [MODE]},
    ]
    simulator.plant.force(SETPOINT, 50.0, now_ms=now_ms())
    config = settings_for(simulator, mosquitto, tls, tmp_path, poll=poll)
    async with subscribe(mosquitto, f"{PREFIX}/tags/#") as sub, running_gateway(config):
        await sub.wait_for(has_value(SETPOINT, 50.0))
        await sub.wait_for(has_value(MODE, simulator.plant.reading(MODE).value))
        for step, value in enumerate((50.5, 51.0, 49.2)):
            simulator.plant.force(SETPOINT, value, now_ms=now_ms())
            # Both groups poll every 100 ms: once the marker's change arrives, the
            # setpoint's value has been polled at least once after it was set.
            marker = f"mark-{step}"
            simulator.plant.force(MODE, marker, now_ms=now_ms())
            await sub.wait_for(has_value(MODE, marker))
        simulator.plant.force(SETPOINT, 51.5, now_ms=now_ms())
        await sub.wait_for(has_value(SETPOINT, 51.5))
    assert values_on(sub.messages, SETPOINT) == [50.0, 51.5]


async def test_flag_policy_publishes_bad_samples_with_quality_text(
    simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    config = settings_for(simulator, mosquitto, tls, tmp_path, quality={"policy": "flag"})
    async with subscribe(mosquitto, f"{PREFIX}/tags/#") as sub, running_gateway(config):
        await sub.wait_for(lambda ms: len(values_on(ms, SETPOINT)) == 1)
        simulator.plant.force(SETPOINT, 7.5, now_ms=now_ms(), quality=0x08)
        await sub.wait_for(has_value(SETPOINT, 7.5))
        simulator.plant.force(SETPOINT, 7.5, now_ms=now_ms(), quality=0x44)
        await sub.wait_for(lambda ms: len(values_on(ms, SETPOINT)) == 3)
    bad, uncertain = [m.json() for m in sub.on(tag_topic(SETPOINT))][1:]
    assert bad["good"] is False
    assert bad["quality"] == 8
    assert bad["quality_text"] == "bad: not connected"
    assert uncertain["quality_text"] == "uncertain: last usable value"
    assert (bad["seq"], uncertain["seq"]) == (2, 3)


async def test_drop_policy_withholds_bad_samples_and_republishes_recovery(
    simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    poll = [{"name": "fast", "interval": "100ms", "tags": [SETPOINT, MODE]}]
    config = settings_for(
        simulator, mosquitto, tls, tmp_path, poll=poll, quality={"policy": "drop"}
    )
    start = simulator.plant.reading(SETPOINT).value
    async with subscribe(mosquitto, f"{PREFIX}/tags/#") as sub, running_gateway(config):
        await sub.wait_for(has_value(SETPOINT, start))
        simulator.plant.force(SETPOINT, 99.0, now_ms=now_ms(), quality=0x18)
        simulator.plant.force(MODE, "bad-seen", now_ms=now_ms())
        await sub.wait_for(has_value(MODE, "bad-seen"))
        simulator.plant.force(SETPOINT, start, now_ms=now_ms())
        await sub.wait_for(lambda ms: len(values_on(ms, SETPOINT)) == 2)
    bodies = [m.json() for m in sub.on(tag_topic(SETPOINT))]
    assert [(b["value"], b["good"], b["seq"]) for b in bodies] == [
        (start, True, 1),
        (start, True, 2),
    ]


def clear_all_alarms(simulator: Simulator) -> None:
    """Start from a plant without active alarms: clear each, acknowledge those gone."""
    plant = simulator.plant
    for alarm_id in list(plant.alarms):
        plant.clear_alarm(alarm_id, now_ms=now_ms())
        if plant.alarms[alarm_id].went_at is not None and not plant.alarms[alarm_id].acked:
            plant.acknowledge(alarm_id, now_ms=now_ms())


async def test_alarms_come_get_acked_go_and_their_retained_state_is_cleared(
    simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    plant = simulator.plant
    clear_all_alarms(simulator)
    assert plant.active_alarms() == []
    alarm_id = next(iter(plant.alarms))
    state_topic = alarm_topic(simulator, alarm_id)
    config = settings_for(simulator, mosquitto, tls, tmp_path)

    def events(ms: list[Received]) -> list[str]:
        return [m.json()["event"] for m in ms if m.topic == f"{PREFIX}/alarms/events"]

    async with subscribe(mosquitto, f"{PREFIX}/alarms/#") as sub, running_gateway(config) as gw:
        plant.raise_alarm(alarm_id, now_ms=now_ms())
        await sub.wait_for(lambda ms: events(ms) == ["came"])
        if simulator.options.dialect == "classic":  # no acknowledge: an operator acks in WinCC
            with pytest.raises(WinCCUnsupported) as refused:
                await gw.client.acknowledge(alarm_id, "seen by test")
            assert str(refused.value) == (
                "acknowledge is not offered by the classic WinCC REST service"
            )
            plant.acknowledge(alarm_id, now_ms=now_ms())
        else:
            await gw.client.acknowledge(alarm_id_of(simulator, alarm_id), "seen by test")
        await sub.wait_for(lambda ms: events(ms) == ["came", "acked"])
        plant.clear_alarm(alarm_id, now_ms=now_ms())
        await sub.wait_for(lambda ms: events(ms) == ["came", "acked", "went"])
        await sub.wait_for(lambda ms: any(m.topic == state_topic and not m.payload for m in ms))
    states = [m for m in sub.messages if m.topic == state_topic]
    came, acked, cleared = states
    assert came.json()["state"] == "came"
    assert came.json()["acked"] is False
    assert set(came.json()) == {
        "id",
        "tag",
        "text",
        "priority",
        "state",
        "acked",
        "came_at",
        "went_at",
        "acked_at",
    }
    assert acked.json()["acked"] is True
    assert TS.match(acked.json()["acked_at"])
    assert cleared.payload == b""
    assert all(m.retain is False for m in sub.messages if m.topic.endswith("/events"))
    # Nothing retained remains for the alarm once it is gone.
    async with subscribe(mosquitto, state_topic, f"{PREFIX}/status") as late:
        await late.wait_for(lambda ms: any(m.topic.endswith("/status") for m in ms))
    assert late.on(state_topic) == []


@pytest.mark.parametrize("protocol", [5, 311])
async def test_both_mqtt_protocols(
    protocol: int, simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    version = aiomqtt.ProtocolVersion.V5 if protocol == 5 else aiomqtt.ProtocolVersion.V311
    config = settings_for(simulator, mosquitto, tls, tmp_path, mqtt={"protocol": protocol})
    async with subscribe(mosquitto, f"{PREFIX}/#", protocol=version) as sub:
        async with running_gateway(config):
            await sub.wait_for(has_value(SETPOINT, simulator.plant.reading(SETPOINT).value))
        await sub.wait_for(lambda ms: ms[-1].topic == f"{PREFIX}/status")
    assert sub.messages[-1].json()["state"] == "offline"
    connected = await mosquitto.line_with("gw-test", "New client")
    assert f"(p{5 if protocol == 5 else 2}," in connected  # mosquitto's names: p2 is 3.1.1


async def test_tls_to_the_broker_with_a_client_certificate(
    simulator: Simulator, mosquitto_tls: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    config = settings_for(simulator, mosquitto_tls, tls, tmp_path)
    context = ssl.create_default_context(cafile=str(tls.ca_file))
    context.load_cert_chain(tls.client_cert, tls.client_key)
    async with (
        subscribe(mosquitto_tls, f"{PREFIX}/#", tls_context=context) as sub,
        running_gateway(config),
    ):
        await sub.wait_for(has_value(SETPOINT, simulator.plant.reading(SETPOINT).value))
    assert any(m.topic == f"{PREFIX}/status" for m in sub.messages)


async def test_polling_stays_concurrent_under_latency(
    tls: TlsFiles, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    from gateway.simulator.server import SimulatorOptions  # noqa: PLC0415

    options = SimulatorOptions(port=0, tags=200, latency_ms=200, change_rate=1.0, seed=3)
    async with Simulator(options, ssl_context=tls.server_context()) as sim:
        poll = [
            {"name": "a", "interval": "500ms", "tags": ["System1.Area1.**"]},
            {"name": "b", "interval": "500ms", "tags": ["System1.Area2.**"]},
        ]
        config = settings_for(sim, mosquitto, tls, tmp_path, poll=poll)
        async with running_gateway(config) as gateway:
            before = [p.stats.published for p in gateway.pollers]
            polls_before = [p.stats.polls for p in gateway.pollers]
            await asyncio.sleep(4.0)  # the measurement window, not a synchronisation
            polls = [p.stats.polls - b for p, b in zip(gateway.pollers, polls_before, strict=True)]
            published = [
                p.stats.published - b for p, b in zip(gateway.pollers, before, strict=True)
            ]
            overruns = [p.stats.overruns for p in gateway.pollers]
    # Two 500 ms groups, each poll taking 200 ms: about 8 polls each in 4 s.
    assert all(count >= 7 for count in polls), polls
    assert all(count > 0 for count in published), published
    assert overruns == [0, 0]


async def test_sigkill_leaves_the_will_and_sigterm_stops_cleanly(
    simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    config = settings_for(simulator, mosquitto, tls, tmp_path, mqtt={"keepalive": "5s"})

    def states(ms: list[Received]) -> list[str]:
        return [m.json()["state"] for m in ms if m.topic == f"{PREFIX}/status" and m.payload]

    async with subscribe(mosquitto, f"{PREFIX}/status") as sub:
        killed = GatewayProcess(config, tmp_path)
        await killed.start()
        await sub.wait_for(lambda ms: states(ms)[-1:] == ["online"])
        assert await killed.stop(signal.SIGKILL) == -signal.SIGKILL
        await sub.wait_for(lambda ms: states(ms)[-1:] == ["offline"])

        stopped = GatewayProcess(config, tmp_path)
        await stopped.start()
        await sub.wait_for(lambda ms: states(ms)[-1:] == ["online"])
        assert await stopped.stop(signal.SIGTERM) == 0, stopped.stderr.decode()
        await sub.wait_for(lambda ms: states(ms)[-1:] == ["offline"])
    log = stopped.stderr.decode()
    assert "Traceback" not in log
    assert "status set to offline" in log


async def test_batch_payload_mode_publishes_one_message_per_poll(
    simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    poll = [{"name": "fast", "interval": "200ms", "tags": ["System1.Area1.Tank*.*"]}]
    mqtt = {"payload": "batch", "batch_max_bytes": "2KB"}
    config = settings_for(simulator, mosquitto, tls, tmp_path, poll=poll, mqtt=mqtt)
    async with subscribe(mosquitto, f"{PREFIX}/#") as sub, running_gateway(config):
        batches = f"{PREFIX}/batch/fast"
        await sub.wait_for(lambda ms: sum(len(m.json()["samples"]) for m in sub.on(batches)) >= 30)
        simulator.plant.force(SETPOINT, 77.0, now_ms=now_ms())
        await sub.wait_for(
            lambda ms: any(s["value"] == 77.0 for m in sub.on(batches) for s in m.json()["samples"])
        )
    assert not any("/tags/" in m.topic for m in sub.messages)
    bodies = [m.json() for m in sub.on(f"{PREFIX}/batch/fast")]
    assert len(bodies[0]["samples"]) < 30  # 2 KB per message: the first poll is split
    assert all(len(m.payload) <= 2048 for m in sub.on(f"{PREFIX}/batch/fast"))
    samples = [s for body in bodies for s in body["samples"]]
    assert {s["tag"] for s in samples} == {n for n in simulator.plant.names if ".Area1.Tank" in n}
    assert set(samples[0]) == {"tag", "value", "quality", "ts", "seq"}
    assert [s["seq"] for s in samples if s["tag"] == SETPOINT] == [1, 2]
    assert all(TS.match(body["ts"]) for body in bodies)


async def test_after_a_restart_alarms_gone_meanwhile_are_cleared_and_others_not_repeated(
    simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    plant = simulator.plant
    clear_all_alarms(simulator)
    going = next(iter(plant.alarms))
    staying = next(a for a in plant.alarms if plant.alarms[a].tag != plant.alarms[going].tag)
    for alarm_id in (going, staying):
        plant.raise_alarm(alarm_id, now_ms=now_ms())
        plant.acknowledge(alarm_id, now_ms=now_ms())
    config = settings_for(simulator, mosquitto, tls, tmp_path)
    events_topic = f"{PREFIX}/alarms/events"
    async with subscribe(mosquitto, f"{PREFIX}/alarms/#") as sub:
        async with running_gateway(config):
            await sub.wait_for(lambda ms: len(sub.on(events_topic)) == 4)  # came, acked each
        before = len(sub.messages)
        plant.clear_alarm(going, now_ms=now_ms())  # acked and gone while the gateway is down
        async with running_gateway(config):
            await sub.wait_for(
                lambda ms: any(
                    m.topic == alarm_topic(simulator, going) and not m.payload for m in ms
                )
            )
            await sub.wait_for(lambda ms: len(sub.on(events_topic)) > 4)
        after = sub.messages[before:]
    assert [m.json()["event"] for m in after if m.topic == events_topic] == ["went"]
    assert [m.json()["id"] for m in after if m.topic == events_topic] == [
        alarm_id_of(simulator, going)
    ]
    assert not [m for m in after if m.topic == alarm_topic(simulator, staying)]


async def test_each_chunk_of_a_poll_is_published_as_soon_as_it_is_read(
    simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    """One tag per request, one request at a time, 500 ms each: the first tag's sample
    reaches the broker while the second tag is still being read, so a change waits for
    its own chunk rather than for the whole poll."""
    config = one_tag_per_request(simulator, mosquitto, tls, tmp_path, [SETPOINT, MODE])
    async with subscribe(mosquitto, f"{PREFIX}/tags/#") as sub, running_gateway(config) as gateway:
        await sub.wait_for(lambda ms: bool(values_on(ms, SETPOINT) and values_on(ms, MODE)))
        simulator.faults.latency_ms = 500
        simulator.plant.force(SETPOINT, 21.0, now_ms=now_ms())
        simulator.plant.force(MODE, "chunked", now_ms=now_ms())
        await sub.wait_for(has_value(SETPOINT, 21.0))
        assert "chunked" not in values_on(sub.messages, MODE), "read after the first chunk"
        assert gateway.pollers[0].stats.polls == 1, "the second poll is still running"
        await sub.wait_for(has_value(MODE, "chunked"))


async def test_every_tag_of_a_realistic_plant_resolves_by_glob_and_publishes(
    mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    """Floats only, null-typed folders, six levels: what a real project serves."""
    options = SimulatorOptions(
        port=0, tags=300, alarms=5, change_rate=1.0, tick=0.05, seed=3, realistic=True
    )
    async with Simulator(options, ssl_context=tls.server_context()) as realistic:
        topics = {tag_topic(name) for name in realistic.plant.names}
        assert all(name.count(".") == 5 for name in realistic.plant.names)
        poll = [{"name": "all", "interval": "200ms", "tags": ["System1.**"]}]
        config = settings_for(realistic, mosquitto, tls, tmp_path, poll=poll)
        async with subscribe(mosquitto, f"{PREFIX}/tags/#") as sub, running_gateway(config):
            await sub.wait_for(lambda ms: {m.topic for m in ms} >= topics)
            await sub.wait_for(lambda ms: any(m.json()["seq"] >= 2 for m in ms))
    assert {m.topic for m in sub.messages} == topics
    assert all(type(m.json()["value"]) is float for m in sub.messages)
