"""WinCC Unified end to end, where it differs from the polled dialects: changes pushed by
subscription, a WebSocket that drops, a session that ends, a session kept alive while
only subscriptions run, and the errors of a misconfigured endpoint. The suites shared
with the other dialects (pipeline, commands, durability) run against Unified too."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.core.models import Reading
from gateway.core.timestamps import now_ms, parse_ts
from gateway.errors import WinCCAuthError, WinCCProtocolError
from gateway.simulator.server import Simulator, SimulatorOptions
from gateway.wincc.settings import UnifiedSettings
from gateway.wincc.unified import UnifiedClient
from tests.conftest import Mosquitto, Received, TlsFiles, subscribe
from tests.gateway_harness import PREFIX, running_gateway, settings_for

pytestmark = pytest.mark.slow

SETPOINT = "System1.Area1.Tank1.Setpoint"
TANKS = "System1.Area1.Tank*.*"


@pytest.fixture
def dialect() -> str:
    """Every simulator of this module speaks Unified."""
    return "unified"


def topic(tag: str) -> str:
    return f"{PREFIX}/tags/{tag.replace('.', '/')}"


def published(messages: list[Received], tag: str) -> list[dict[str, Any]]:
    return [m.json() for m in messages if m.topic == topic(tag)]


def changes(readings: list[Reading]) -> list[tuple[Any, int, int]]:
    """(value, quality, ts) of every reading that differs from the one before it: what the
    gateway publishes with no deadband."""
    kept: list[tuple[Any, int, int]] = []
    for reading in readings:
        if not kept or kept[-1][:2] != (reading.value, reading.quality):
            kept.append((reading.value, reading.quality, reading.ts_ms))
    return kept


async def test_a_change_is_pushed_at_once_not_at_the_next_poll(
    simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    """The group's interval is 30 s: a change that arrives within a few seconds came by
    subscription, not by a poll."""
    poll = [{"name": "slow", "interval": "30s", "tags": [TANKS]}]
    config = settings_for(simulator, mosquitto, tls, tmp_path, poll=poll)
    async with subscribe(mosquitto, f"{PREFIX}/tags/#") as sub, running_gateway(config):
        await sub.wait_for(lambda ms: bool(published(ms, SETPOINT)))
        forced_at = now_ms()
        simulator.plant.force(SETPOINT, 42.5, now_ms=forced_at)
        async with asyncio.timeout(5):
            await sub.wait_for(lambda ms: any(p["value"] == 42.5 for p in published(ms, SETPOINT)))
    sample = next(p for p in published(sub.messages, SETPOINT) if p["value"] == 42.5)
    assert parse_ts(sample["ts"]) == forced_at
    assert [p["seq"] for p in published(sub.messages, SETPOINT)] == [1, 2]


async def test_dropped_websockets_lose_no_change(
    simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    """A lively plant and three cuts of the WebSocket: every change the simulator recorded
    reaches MQTT, in order, by subscription (two names each), by the read after
    resubscribing or from the archive."""
    poll = [{"name": "fast", "interval": "200ms", "tags": [TANKS]}]
    config = settings_for(
        simulator,
        mosquitto,
        tls,
        tmp_path,
        poll=poll,
        alarms={"enabled": False},
        wincc={"subscribe_chunk": 2},
    )
    async with subscribe(mosquitto, f"{PREFIX}/tags/#") as sub, running_gateway(config) as gw:
        tags = list(gw.pollers[0].tags)
        stats = gw.pollers[0].stats
        await sub.wait_for(lambda ms: all(published(ms, tag) for tag in tags))
        start = now_ms()
        simulator.faults.change_rate = 3.0
        for cut in range(1, 4):
            await asyncio.sleep(0.5)  # let changes flow before the next cut
            assert simulator.unified.drop_websockets() == 1
            async with asyncio.timeout(15):
                while stats.failures < cut or gw.pollers[0].sink.gap_open:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        simulator.faults.change_rate = 0.0
        end = now_ms()
        expected = {
            tag: [
                change
                for change in changes(
                    simulator.plant.history(tag, start_ms=0, end_ms=end, limit=100_000)[0]
                )
                if change[2] >= start
            ]
            for tag in tags
        }
        last = {tag: found[-1] for tag, found in expected.items() if found}
        assert len(last) > 3, "the plant did not change"

        def complete(ms: list[Received]) -> bool:
            return all(
                any(parse_ts(p["ts"]) == final[2] for p in published(ms, tag))
                for tag, final in last.items()
            )

        await sub.wait_for(complete, timeout=20)
    for tag, wanted in expected.items():
        got = [(p["value"], p["quality"], parse_ts(p["ts"])) for p in published(sub.messages, tag)]
        seen = [sample for sample in got if start <= sample[2] <= end]
        assert [s for s in wanted if s in seen] == wanted, tag
        seqs = [p["seq"] for p in published(sub.messages, tag)]
        assert seqs == list(range(1, len(seqs) + 1)), tag  # no gap, no repeat


async def test_an_ended_session_is_renewed_and_the_subscriptions_resume(
    simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    """The runtime ends every session (as at a restart): the WebSocket closes with 4401,
    the gateway logs in again, subscribes again, and the next change arrives."""
    config = settings_for(simulator, mosquitto, tls, tmp_path)
    async with subscribe(mosquitto, f"{PREFIX}/tags/#") as sub, running_gateway(config) as gw:
        await sub.wait_for(lambda ms: bool(published(ms, SETPOINT)))
        client = gw.client
        assert isinstance(client, UnifiedClient)
        before = await client.token()
        assert simulator.unified.end_sessions() == 1
        async with asyncio.timeout(15):
            while gw.pollers[0].stats.failures == 0 or gw.pollers[0].sink.gap_open:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        simulator.plant.force(SETPOINT, 7.25, now_ms=now_ms())
        await sub.wait_for(lambda ms: any(p["value"] == 7.25 for p in published(ms, SETPOINT)))
        assert await client.token() != before


@pytest.fixture
async def short_sessions(tls: TlsFiles) -> AsyncIterator[Simulator]:
    """A runtime that ends a session after one second without a request."""
    options = SimulatorOptions(
        port=0, tags=200, alarms=5, change_rate=0.0, seed=7, dialect="unified", auto_logoff=1.0
    )
    async with Simulator(options, ssl_context=tls.server_context()) as sim:
        yield sim


async def test_the_session_is_extended_while_only_subscriptions_run(
    short_sessions: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    """Subscriptions alone do not keep a session; the gateway extends it well inside the
    auto-logoff window, so it keeps its one session for many windows."""
    simulator = short_sessions
    poll = [{"name": "fast", "interval": "100ms", "tags": [TANKS]}]
    config = settings_for(simulator, mosquitto, tls, tmp_path, poll=poll, alarms={"enabled": False})
    async with subscribe(mosquitto, f"{PREFIX}/tags/#") as sub, running_gateway(config) as gw:
        await sub.wait_for(lambda ms: bool(published(ms, SETPOINT)))
        client = gw.client
        assert isinstance(client, UnifiedClient)
        token = await client.token()
        start = now_ms()
        for step in range(1, 5):  # four auto-logoff windows, each marked by a change
            while now_ms() < start + step * 1000:  # noqa: ASYNC110 - time must pass here
                await asyncio.sleep(0.05)
            value = 100.0 + step
            simulator.plant.force(SETPOINT, value, now_ms=now_ms())
            await sub.wait_for(
                lambda ms, value=value: any(p["value"] == value for p in published(ms, SETPOINT))
            )
        assert await client.token() == token
        assert gw.pollers[0].stats.failures == 0
        assert len(simulator.unified.sessions) == 1


async def test_a_wrong_password_and_a_redirecting_url_are_clear_errors(
    simulator: Simulator, tls: TlsFiles
) -> None:
    settings = UnifiedSettings(url=simulator.url + "/graphql/", username="demo", password="demo")
    connector = aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=str(tls.ca_file)))
    async with aiohttp.ClientSession(connector=connector) as session:
        wrong = UnifiedClient(session, settings.url, "demo", None)
        with pytest.raises(WinCCAuthError, match=r"check wincc\.username"):
            await wrong.read(SETPOINT)
        redirected = UnifiedClient(session, simulator.url + "/graphql", "demo", settings.password)
        with pytest.raises(WinCCProtocolError, match="redirects"):
            await redirected.read(SETPOINT)
        right = UnifiedClient(session, settings.url, "demo", settings.password)
        assert (await right.read(SETPOINT)).name == SETPOINT
        await right.close()
