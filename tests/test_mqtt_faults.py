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
from gateway.buffer.store import Message
from gateway.core.topics import tag_path
from gateway.simulator.server import Simulator
from tests.conftest import Mosquitto, TlsFiles, logged, subscribe
from tests.gateway_harness import PREFIX, GatewayProcess, running_gateway, settings_for
from tests.tcp_proxy import tcp_proxy
from tests.test_durability import final_seqs, start_collector, stop_task

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
        fits, over = f"{PREFIX}/probe/fits", f"{PREFIX}/probe/over"
        # PUBLISH of 4,096 bytes: fixed header 1 + 2 (remaining length), topic length 2,
        # packet id 2, properties length 1; MQTT 5, QoS 1.
        exact = 4096 - 1 - 2 - 2 - 2 - 1 - len(fits)
        async with (
            subscribe(broker, f"{PREFIX}/probe/#", f"{PREFIX}/tags/Odd/#") as sub,
            running_gateway(config) as gateway,
        ):
            with logged("gateway.mqtt.publisher", "dropped, the broker cannot take it") as said:
                await gateway.buffer.append(
                    [
                        Message(f"{PREFIX}/probe/big", b"x" * 5000, 1, False),
                        Message(fits, b"x" * exact, 1, False),
                        Message(over, b"x" * (exact + 1), 1, False),
                        Message(f"{PREFIX}/probe/{'t' * 70_000}", b"{}", 1, False),
                        Message(odd, b'{"value": 1}', 1, False),
                        Message(f"{PREFIX}/probe/small", b"after", 1, False),
                    ]
                )
                await sub.wait_for(lambda ms: any(m.payload == b"after" for m in ms))
                assert said.is_set()
            assert [m.topic for m in sub.messages] == [fits, odd, f"{PREFIX}/probe/small"]
            assert "%EF%BF%BE" in odd
            assert gateway.session.dropped["too_large"] == 3
            assert dropped_metric(gateway, "too_large") == 3
            assert gateway.session.reconnects == 0
            assert gateway.session.connected.is_set()
            assert not [line for line in broker.log if "disconnect" in line.lower()], broker.log
    finally:
        await broker.stop()


@pytest.mark.slow
async def test_a_stalled_link_is_noticed_within_a_keepalive_and_a_half_and_nothing_is_lost(
    simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    """The link to the broker stops moving (no FIN, no RST), longer than the keepalive:
    the gateway gives it up within 1.5 keepalives, reconnects once the link moves again
    and after a cut, and every seq arrives."""
    simulator.faults.change_rate = 2.0
    collector, collecting = await start_collector(mosquitto)
    try:
        async with tcp_proxy("127.0.0.1", mosquitto.port) as proxy:
            config = settings_for(
                simulator,
                mosquitto,
                tls,
                tmp_path,
                poll=POLL,
                alarms={"enabled": False},
                mqtt={"url": f"mqtt://127.0.0.1:{proxy.port}", "keepalive": "2s"},
            )
            async with running_gateway(config) as gateway:
                session = gateway.session
                await collector.wait_until(lambda: collector.distinct > 20)
                proxy.stall()
                stalled = time.monotonic()
                await wait_until(lambda: not session.connected.is_set(), timeout=10)
                noticed = time.monotonic() - stalled
                assert noticed < 1.5 * 2, f"a dead link was noticed after {noticed:.1f} s"
                connections = proxy.connections
                proxy.resume()
                await asyncio.wait_for(session.connected.wait(), 15)
                assert proxy.connections > connections
                seen = collector.distinct
                await collector.wait_until(lambda: collector.distinct > seen + 20)

                connections = proxy.connections
                proxy.cut()
                await wait_until(lambda: proxy.connections > connections, timeout=10)
                await asyncio.wait_for(session.connected.wait(), 15)
                seen = collector.distinct
                await collector.wait_until(lambda: collector.distinct > seen + 20)
            await collector.wait_complete(final_seqs(tmp_path / "buffer.db"))
    finally:
        await stop_task(collecting)
    assert collector.reused() == []


@pytest.mark.slow
async def test_a_broker_killed_with_persistence_loses_no_seq(
    simulator: Simulator, tls: TlsFiles, tmp_path: Path
) -> None:
    """The broker dies (SIGKILL) mid-stream and comes back from its persistence file: the
    gateway deleted from its buffer only what the broker acknowledged, so every seq
    reaches the subscriber (connected, persistent session) once the broker is back."""
    simulator.faults.change_rate = 2.0
    broker = Mosquitto(tmp_path / "persistent", autosave=True)
    await broker.start()
    collector, collecting = await start_collector(broker)
    try:
        config = settings_for(
            simulator, broker, tls, tmp_path, poll=POLL, alarms={"enabled": False}
        )
        async with running_gateway(config) as gateway:
            await collector.wait_until(lambda: collector.distinct > 50)
            await broker.kill()
            await wait_until(lambda: not gateway.session.connected.is_set())
            buffered = gateway.buffer.buffered
            await wait_until(lambda: gateway.buffer.buffered > buffered + 20)
            await broker.start()
            await asyncio.wait_for(gateway.session.connected.wait(), 20)
            seen = collector.distinct
            await collector.wait_until(lambda: collector.distinct > seen + 20)
        await collector.wait_complete(final_seqs(tmp_path / "buffer.db"))
    finally:
        await stop_task(collecting)
        await broker.stop()
    assert collector.reused() == []
