"""SIGHUP to both `wincc-gateway run` processes of a pair: the active instance applies the
new [[poll]] at once, as a single gateway does; the standby says it takes it into its next
turn, and does; neither process stops."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from gateway.simulator.server import Simulator
from tests.conftest import Mosquitto, TlsFiles, subscribe
from tests.gateway_harness import PREFIX, toml_of
from tests.test_reload import LEVEL, SPEED, topic
from tests.test_standby import Instance, pair_config

pytestmark = pytest.mark.slow


async def test_sighup_reloads_the_active_instance_now_and_the_standby_at_its_turn(
    simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    pair = []
    for name in ("a", "b"):
        config = pair_config(simulator, mosquitto, tls, tmp_path / name, name)
        config["poll"] = [{"name": "fast", "interval": "200ms", "tags": [LEVEL]}]
        pair.append(Instance(name, config, tmp_path / name))
    active, standby = pair
    try:
        async with subscribe(mosquitto, f"{PREFIX}/tags/#") as sub:
            await active.start()
            await active.says("taking over")
            await standby.start()
            await standby.says("standby (instance b)")
            await sub.wait_for(lambda ms: any(m.topic == topic(LEVEL) for m in ms))
            assert not any(m.topic == topic(SPEED) for m in sub.messages)

            for instance in pair:
                instance.config["poll"][0]["tags"] = [LEVEL, SPEED]
                instance.process.config_file.write_text(toml_of(instance.config), "utf-8")
                instance.process.send(signal.SIGHUP)
            await active.says("config reloaded: 1 groups polling")
            await sub.wait_for(lambda ms: any(m.topic == topic(SPEED) for m in ms))
            await standby.says("the standby polls as now configured from its next turn")
            assert standby.said("polling 2 tags") == 0  # nothing polled before its turn

        await active.process.stop(signal.SIGKILL)
        await standby.says("taking over")
        await standby.says("group fast: polling 2 tags")
        assert await standby.process.stop(signal.SIGTERM) == 0  # SIGHUP stopped neither
    finally:
        for instance in pair:
            if instance.process.process and instance.process.process.returncode is None:
                await instance.process.stop(signal.SIGKILL)
    assert active.said("config reloaded: the standby") == 0
    assert standby.said("config reloaded: the standby") == 1  # said once
