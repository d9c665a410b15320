"""The command topics of a gateway pair: while both instances are subscribed (the old
active one has not yet noticed that it lost the turn), each command is carried out by one
of them only, through MQTT 5 shared subscriptions on mosquitto; with MQTT 3.1.1 the
subscriptions are plain, as they were."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.simulator.server import Simulator
from tests.conftest import Mosquitto, TlsFiles
from tests.gateway_harness import running_gateway
from tests.test_commands import RESULT, SETPOINT, command_config, commander, write_topic

pytestmark = pytest.mark.slow

COMMANDS = 6


def instance_config(
    sim: Simulator, broker: Mosquitto, tls: TlsFiles, folder: Path, instance: str
) -> dict[str, Any]:
    """One instance of a pair as its own session: the client id the pair gives it."""
    folder.mkdir(parents=True, exist_ok=True)
    config = command_config(sim, broker, tls, folder)
    config["redundancy"] = {"role": "auto", "instance": instance}
    config["mqtt"]["client_id"] = f"gw-test-{instance}"
    return config


def carried_out(gateway: Any) -> int:
    return sum(gateway.commands.results.values())


async def test_two_active_instances_of_a_pair_carry_out_each_command_once(
    simulator: Simulator,
    mosquitto: Mosquitto,
    tls: TlsFiles,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    a, b = (instance_config(simulator, mosquitto, tls, tmp_path / n, n) for n in "ab")
    caplog.set_level(logging.INFO, logger="gateway.mqtt.session")
    async with commander(mosquitto) as cmd:
        async with running_gateway(a) as first, running_gateway(b) as second:
            for n in range(COMMANDS):
                body = orjson.dumps({"value": float(n), "id": f"w{n}"})
                await cmd.publish(write_topic(SETPOINT), body)
            await cmd.answers.wait_for(lambda answers: len(answers) >= COMMANDS)
        # both stopped: whatever either of them received has been carried out or refused
        answered = [answer.json() for answer in cmd.answers.on(RESULT)]
    assert sorted(answer["id"] for answer in answered) == [f"w{n}" for n in range(COMMANDS)]
    assert all(answer["ok"] for answer in answered)
    assert sorted(value for _, value in simulator.write_log) == [float(n) for n in range(COMMANDS)]
    assert carried_out(first) + carried_out(second) == COMMANDS
    assert carried_out(first) > 0  # the broker handed them out between the two
    assert carried_out(second) > 0
    said = [r.getMessage() for r in caplog.records if "commands shared" in r.getMessage()]
    assert said == ["commands shared with the other instance: group wincc-gateway.wincc_test"] * 2


async def test_a_pair_on_mqtt311_subscribes_plainly_and_says_so_once(
    simulator: Simulator,
    mosquitto: Mosquitto,
    tls: TlsFiles,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    a, b = (instance_config(simulator, mosquitto, tls, tmp_path / n, n) for n in "ab")
    for config in (a, b):
        config["mqtt"]["protocol"] = 311
    caplog.set_level(logging.INFO, logger="gateway.mqtt.session")
    async with (
        commander(mosquitto) as cmd,
        running_gateway(a) as first,
        running_gateway(b) as second,
    ):
        await cmd.publish(write_topic(SETPOINT), b'{"value": 7.0, "id": "both"}')
        await cmd.answers.wait_for(lambda answers: len(answers) >= 2)
        assert (carried_out(first), carried_out(second)) == (1, 1)
    assert simulator.write_log == [(SETPOINT, 7.0), (SETPOINT, 7.0)]  # two writers
    plain = [r for r in caplog.records if "commands subscribed plainly" in r.getMessage()]
    assert len(plain) == 2  # once per instance
    assert all("MQTT 3.1.1" in record.getMessage() for record in plain)
