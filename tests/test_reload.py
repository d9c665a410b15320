"""SIGHUP reloads [[poll]] and [commands] without touching the MQTT session or the buffer."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from gateway.core.topics import tag_path
from gateway.simulator.server import Simulator
from tests.conftest import Mosquitto, Received, TlsFiles, subscribe
from tests.gateway_harness import PREFIX, GatewayProcess, settings_for, toml_of

pytestmark = pytest.mark.slow

LEVEL = "System1.Area1.Tank1.Level"
SPEED = "System1.Area1.Pump1.Speed"


def topic(tag: str) -> str:
    return f"{PREFIX}/tags/{tag_path(tag)}"


async def test_sighup_adds_a_tag_and_keeps_session_and_buffer(
    simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    poll = [{"name": "fast", "interval": "100ms", "tags": [LEVEL]}]
    config = settings_for(simulator, mosquitto, tls, tmp_path, poll=poll)
    process = GatewayProcess(config, tmp_path)

    def statuses(ms: list[Received]) -> list[Received]:
        return [m for m in ms if m.topic == f"{PREFIX}/status" and m.payload]

    async with subscribe(mosquitto, f"{PREFIX}/#") as sub:
        await process.start()
        await sub.wait_for(lambda ms: any(m.topic == topic(LEVEL) for m in ms))
        await sub.wait_for(
            lambda ms: statuses(ms)[-1:] != [] and statuses(ms)[-1].json()["source"] == "up"
        )
        assert not any(m.topic == topic(SPEED) for m in sub.messages)
        online_before = len(statuses(sub.messages))

        # A broken config is refused and changes nothing.
        process.config_file.write_text("[[poll]]\nname = 3\n", encoding="utf-8")
        process.send(signal.SIGHUP)
        await process.wait_for_log("config reload refused")

        config["poll"][0]["tags"] = [LEVEL, SPEED]
        config["mqtt"]["qos"] = 0  # needs a restart: logged, not applied
        process.config_file.write_text(toml_of(config), encoding="utf-8")
        process.send(signal.SIGHUP)
        await sub.wait_for(lambda ms: any(m.topic == topic(SPEED) for m in ms))
        assert await process.stop(signal.SIGTERM) == 0
    log = process.stderr.decode()
    assert "config reload refused: poll[0].name" in log
    assert "changes to [mqtt] take effect after a restart" in log
    assert "config reloaded: 1 groups polling" in log
    # The session stayed up: one connection, no second "online", and the buffer kept going.
    assert len(statuses(sub.messages)) - online_before == 1  # only the final offline
    assert statuses(sub.messages)[-1].json()["state"] == "offline"
    await mosquitto.line_with("New client connected", "gw-test")
    connections = [
        line for line in mosquitto.log if "New client connected" in line and "gw-test" in line
    ]
    assert len(connections) == 1
    assert "from before the restart" not in log
    levels = [m.json()["seq"] for m in sub.messages if m.topic == topic(LEVEL)]
    assert levels == list(range(1, len(levels) + 1))
