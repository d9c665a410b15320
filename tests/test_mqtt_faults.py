"""The MQTT side under faults: a frozen broker, a stop that cannot drain, bad messages,
a stalled or cut link, a broker killed. The status it leaves is always true, publishing
never stalls on one message, and polling never waits for the broker."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.app import Gateway
from gateway.buffer import Message
from gateway.core.topics import tag_path
from gateway.simulator.server import Simulator
from tests.conftest import Mosquitto, TlsFiles, logged, subscribe
from tests.gateway_harness import PREFIX, GatewayProcess, running_gateway, settings_for

STATUS = f"{PREFIX}/status"
POLL = [{"name": "fast", "interval": "100ms", "tags": ["System1.Area1.Tank*.*"]}]


async def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``condition`` until it holds; fail with TimeoutError after ``timeout``."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - the gateway offers no event for these
            await asyncio.sleep(0.05)


async def retained_status(broker: Mosquitto) -> dict[str, Any]:
    """The retained ``P/status`` as a fresh subscriber receives it."""
    async with subscribe(broker, STATUS) as sub:
        messages = await sub.wait_for(lambda ms: any(m.topic == STATUS for m in ms), 10)
    body: dict[str, Any] = orjson.loads(messages[0].payload)
    return body


async def test_pollers_go_on_while_the_broker_is_frozen_and_the_status_is_true_after(
    simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    simulator.faults.change_rate = 2.0
    config = settings_for(simulator, mosquitto, tls, tmp_path, poll=POLL, alarms={"enabled": False})
    async with running_gateway(config) as gateway:
        await wait_until(lambda: gateway.source.state == "up")
        mosquitto.freeze()
        try:
            simulator.faults.down = True
            await wait_until(lambda: gateway.source.state == "down")
            simulator.faults.down = False
            buffered = gateway.buffer.buffered
            started = time.monotonic()
            # The poller that saw WinCC go down must not wait for the frozen broker to
            # take the status: it reads again and buffers within its retry delay.
            await wait_until(lambda: gateway.buffer.buffered > buffered + 10, timeout=8)
            assert gateway.source.state == "up"
            assert time.monotonic() - started < 8
        finally:
            mosquitto.thaw()
        await wait_until(lambda: gateway.session.published > 0 and len(gateway.buffer) < 50)
        status = await retained_status(mosquitto)
        assert status["state"] == "online"
        assert status["source"] == "up"


async def wait_for_status(broker: Mosquitto, state: str) -> None:
    """Wait until ``P/status`` says ``state``."""
    async with subscribe(broker, STATUS) as sub:
        await sub.wait_for(
            lambda ms: any(m.topic == STATUS and m.json()["state"] == state for m in ms), 15
        )


@pytest.mark.slow
@pytest.mark.parametrize("protocol", [5, 311])
async def test_retained_status_is_offline_after_every_kind_of_stop(
    simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path, protocol: int
) -> None:
    """Clean stop, a stop whose drain runs out of time on a frozen broker, SIGKILL: a
    fresh subscriber afterwards always reads a retained offline."""
    simulator.faults.change_rate = 2.0
    config = settings_for(
        simulator,
        mosquitto,
        tls,
        tmp_path,
        poll=POLL,
        mqtt={"protocol": protocol, "drain_timeout": "1s"},
    )

    async def stopped(sig: signal.Signals, *, frozen: bool = False) -> str:
        gateway = GatewayProcess(config, tmp_path)
        await gateway.start()
        await wait_for_status(mosquitto, "online")
        if frozen:
            mosquitto.freeze()
        try:
            code = await gateway.stop(sig)
        finally:
            if frozen:
                mosquitto.thaw()
        assert code == (0 if sig == signal.SIGTERM else -sig), gateway.stderr.decode()
        assert "Traceback" not in gateway.stderr.decode()
        status = await retained_status(mosquitto)
        assert status["state"] == "offline", (sig, frozen, gateway.stderr.decode())
        return gateway.stderr.decode()

    clean = await stopped(signal.SIGTERM)
    assert "status set to offline" in clean
    timed_out = await stopped(signal.SIGTERM, frozen=True)
    assert "stopping before the broker took everything" in timed_out
    await stopped(signal.SIGKILL)


def dropped_metric(gateway: Gateway, reason: str) -> float:
    """``wincc_gateway_samples_dropped_total{reason=...}`` as Prometheus would scrape it."""
    value = gateway.metrics.registry.get_sample_value(
        "wincc_gateway_samples_dropped_total", {"reason": reason}
    )
    assert value is not None
    return value


@pytest.mark.slow
async def test_a_message_the_broker_cannot_take_is_dropped_and_the_next_one_arrives(
    simulator: Simulator, tls: TlsFiles, tmp_path: Path
) -> None:
    """A packet over the broker's Maximum Packet Size and a topic over MQTT's 65,535
    bytes are dropped, counted and logged; the messages behind them arrive, on the same
    connection; a tag name with a noncharacter arrives under its escaped topic."""
    broker = Mosquitto(tmp_path / "small-packets", max_packet_size=4096)
    await broker.start()
    try:
        config = settings_for(
            simulator, broker, tls, tmp_path, poll=POLL, alarms={"enabled": False}
        )
        odd = f"{PREFIX}/tags/" + tag_path("Odd.\ufffeName\ufdd0")
        async with (
            subscribe(broker, f"{PREFIX}/probe/#", f"{PREFIX}/tags/Odd/#") as sub,
            running_gateway(config) as gateway,
        ):
            with logged("gateway.mqtt_session", "dropped, the broker cannot take it") as said:
                await gateway.buffer.append(
                    [
                        Message(f"{PREFIX}/probe/big", b"x" * 5000, 1, False),
                        Message(f"{PREFIX}/probe/{'t' * 70_000}", b"{}", 1, False),
                        Message(odd, b'{"value": 1}', 1, False),
                        Message(f"{PREFIX}/probe/small", b"after", 1, False),
                    ]
                )
                await sub.wait_for(lambda ms: any(m.payload == b"after" for m in ms))
                assert said.is_set()
            assert [m.topic for m in sub.messages] == [odd, f"{PREFIX}/probe/small"]
            assert "%EF%BF%BE" in odd
            assert gateway.session.dropped["too_large"] == 2
            assert dropped_metric(gateway, "too_large") == 2
            assert gateway.session.reconnects == 0
            assert gateway.session.connected.is_set()
            assert not [line for line in broker.log if "disconnect" in line.lower()], broker.log
    finally:
        await broker.stop()
