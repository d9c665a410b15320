"""``/metrics`` of both instances of a gateway pair over real HTTP: the standby says it is
the standby and whether it is connected, the active one carries the same role gauge with
the plant's figures, and the takeovers of each process are counted."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.config import GatewaySettings
from gateway.redundancy import Pair
from gateway.simulator.server import Simulator
from gateway.wincc.connect import open_client
from tests.conftest import Mosquitto, TlsFiles, free_port
from tests.gateway_harness import settings_for

pytestmark = pytest.mark.slow

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def instance_settings(
    sim: Simulator, broker: Mosquitto, tls: TlsFiles, folder: Path, name: str, *, listen: str
) -> GatewaySettings:
    folder.mkdir(parents=True, exist_ok=True)
    config = settings_for(
        sim,
        broker,
        tls,
        folder,
        poll=[{"name": "fast", "interval": "200ms", "tags": ["System1.Area1.Tank1.*"]}],
        alarms={"enabled": False},
        health={"enabled": True, "listen": listen},
        redundancy={"role": "auto", "takeover": "3s", "instance": name},
    )
    return GatewaySettings(**config)


@contextlib.asynccontextmanager
async def instance(
    sim: Simulator, broker: Mosquitto, tls: TlsFiles, folder: Path, name: str
) -> AsyncIterator[tuple[str, asyncio.Event]]:
    """One instance of the pair in this process; its /metrics URL and its stop."""
    listen = f"127.0.0.1:{free_port()}"
    settings = instance_settings(sim, broker, tls, folder, name, listen=listen)
    stop = asyncio.Event()
    async with open_client(settings.wincc) as client:
        task = asyncio.create_task(Pair(settings, client).run(stop))
        try:
            yield f"http://{listen}/metrics", stop
        finally:
            stop.set()
            async with asyncio.timeout(20):
                await task


async def scrape(http: aiohttp.ClientSession, url: str) -> tuple[str, Samples]:
    """The content type and the samples of one scrape; nothing while nobody listens."""
    try:
        async with http.get(url) as response:
            assert response.status == 200
            text = await response.text()
            content_type = response.headers["Content-Type"]
    except aiohttp.ClientConnectionError:
        return "", {}
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    return content_type, samples


async def scrape_until(
    http: aiohttp.ClientSession, url: str, done: Callable[[Samples], bool]
) -> tuple[str, Samples]:
    """Scrape every 50 ms until ``done`` holds (fail after 20 s)."""
    async with asyncio.timeout(20):
        while not done((answer := await scrape(http, url))[1]):  # noqa: ASYNC110 - over HTTP
            await asyncio.sleep(0.05)
        return answer


def role(name: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return ("wincc_gateway_redundancy_active", (("instance", name),))


TAKEOVERS = ("wincc_gateway_redundancy_takeovers_total", ())
CONNECTED = ("wincc_gateway_mqtt_connected", ())


async def test_both_instances_serve_metrics_and_exactly_one_says_active(
    simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    async with (
        aiohttp.ClientSession() as http,
        instance(simulator, mosquitto, tls, tmp_path / "a", "a") as (a_url, a_stop),
    ):
        _, active = await scrape_until(http, a_url, lambda s: s.get(role("a")) == 1)
        async with instance(simulator, mosquitto, tls, tmp_path / "b", "b") as (b_url, _):
            content_type, standby = await scrape_until(http, b_url, lambda s: s.get(CONNECTED) == 1)
            assert content_type.startswith("text/plain; version=0.0.4")
            assert (standby[role("b")], standby[TAKEOVERS]) == (0, 0)
            assert ("wincc_gateway_build_info", ()) not in standby  # labelled by version
            assert not any(name == "wincc_gateway_polls_total" for name, _ in standby)
            _, active = await scrape(http, a_url)
            assert (active[role("a")], active[TAKEOVERS], active[CONNECTED]) == (1, 1, 1)
            assert any(name == "wincc_gateway_polls_total" for name, _ in active)

            a_stop.set()  # a clean stop: the status says offline, b takes over
            _, took_over = await scrape_until(http, b_url, lambda s: s.get(role("b")) == 1)
            assert took_over[TAKEOVERS] == 1
            assert any(name == "wincc_gateway_polls_total" for name, _ in took_over)
