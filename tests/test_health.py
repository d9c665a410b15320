"""GET /health and GET /metrics: the rules on stand-ins, then against a real gateway."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import aiomqtt
import orjson
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gateway import __version__, backlog_watch
from gateway.config import HealthSettings
from gateway.core.timestamps import now_ms
from gateway.errors import GatewayError
from gateway.health import HealthServer, assess, split_listen
from gateway.metrics import GatewayMetrics
from gateway.simulator.server import Simulator
from gateway.sink import PollStats
from tests.conftest import Mosquitto, Received, TlsFiles, subscribe
from tests.gateway_harness import PREFIX, running_gateway, settings_for

SETPOINT = "System1.Area1.Tank1.Setpoint"
LOOPBACK = HealthSettings(listen="127.0.0.1:0")


# --- the rules, on stand-ins -------------------------------------------------------------


def stand_in(**changes: Any) -> Any:
    """A gateway-shaped object with everything well: connected, WinCC up, polled just now."""
    connected = asyncio.Event()
    connected.set()
    started = asyncio.Event()
    started.set()
    fields: dict[str, Any] = {
        "started": started,
        "session": SimpleNamespace(
            connected=connected,
            reconnects=2,
            published=40,
            dropped={"too_large": 9, "invalid": 1},
        ),
        "source": SimpleNamespace(state="up", errors_by_kind={"WinCCUnavailable": 3}),
        "decider": SimpleNamespace(withheld=4, bad_published=5),
        "commands": SimpleNamespace(results={"ok": 1, "refused": 2}),
        "pollers": [
            SimpleNamespace(
                name="fast", interval=1.0, stats=PollStats(polls=7, last_success=99.0, backfilled=9)
            )
        ],
        "alarm_poller": SimpleNamespace(interval=2.0, stats=PollStats(polls=3, last_success=99.0)),
        "buffer": SimpleNamespace(
            depth=0,
            size_bytes=8192,
            max_size=10_000,
            dropped=6,
            storage_dropped=8,
            storage_error=None,
        ),
        "pair": None,
    }
    fields.update(changes)
    return SimpleNamespace(**fields)


def test_all_well_is_healthy_with_details() -> None:
    verdict = assess(stand_in(), now=100.0, polling_since=50.0)
    assert verdict.reasons == []
    assert verdict.details["mqtt"] == {"connected": True, "reconnects": 2}
    assert verdict.details["wincc"] == {"source": "up"}
    assert verdict.details["groups"]["fast"] == {"interval_s": 1.0, "last_success_age_s": 1.0}
    assert verdict.details["alarms"] == {"interval_s": 2.0, "last_success_age_s": 1.0}
    assert verdict.details["buffer"] == {"messages": 0, "bytes": 8192, "full": False}


def test_a_group_is_stale_after_three_intervals_without_a_good_poll() -> None:
    gateway = stand_in()
    assert assess(gateway, now=102.0, polling_since=50.0).reasons == []
    assert assess(gateway, now=102.5, polling_since=50.0).reasons == [
        "wincc: group fast has not polled successfully for 3.5 s"
    ]


def test_a_group_that_never_polled_is_measured_from_the_start() -> None:
    never = [SimpleNamespace(name="slow", interval=10.0, stats=PollStats())]
    gateway = stand_in(pollers=never, alarm_poller=None)
    assert assess(gateway, now=125.0, polling_since=100.0).reasons == []
    assert assess(gateway, now=131.0, polling_since=100.0).reasons == [
        "wincc: group slow has not polled successfully for 31.0 s"
    ]


def test_every_problem_is_a_reason() -> None:
    gateway = stand_in(
        session=SimpleNamespace(
            connected=asyncio.Event(), reconnects=9, published=0, dropped={"too_large": 0}
        ),
        source=SimpleNamespace(state="down", errors_by_kind={}),
        buffer=SimpleNamespace(
            depth=100,
            size_bytes=10_000,
            max_size=10_000,
            dropped=0,
            storage_error="database or disk is full",
        ),
    )
    assert assess(gateway, now=120.0, polling_since=50.0).reasons == [
        "mqtt: not connected",
        "wincc: source down",
        "wincc: group fast has not polled successfully for 21.0 s",
        "wincc: alarms have not been polled successfully for 21.0 s",
        "buffer: full (100 messages waiting)",
        "buffer: cannot store (database or disk is full)",
    ]


def test_listen_addresses() -> None:
    assert split_listen("127.0.0.1:9100") == ("127.0.0.1", 9100)
    assert split_listen("[::]:0") == ("::", 0)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Prometheus text -> {(sample name, sorted labels): value}."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_read_the_counters_at_scrape_time() -> None:
    gateway = stand_in()
    metrics = GatewayMetrics(gateway)
    metrics.observe_poll("fast", 0.02)
    metrics.observe_poll("fast", 0.3)
    gateway.pollers[0].stats.polls = 8  # a later scrape sees the counter as it is then

    seen = samples(generate_latest(metrics.registry).decode())
    assert seen[("wincc_gateway_polls_total", (("group", "fast"),))] == 8
    assert seen[("wincc_gateway_poll_duration_seconds_count", (("group", "fast"),))] == 2
    bucket = (("group", "fast"), ("le", "0.05"))
    assert seen[("wincc_gateway_poll_duration_seconds_bucket", bucket)] == 1
    assert seen[("wincc_gateway_alarm_polls_total", ())] == 3
    assert seen[("wincc_gateway_samples_dropped_total", (("reason", "quality"),))] == 4
    assert seen[("wincc_gateway_samples_dropped_total", (("reason", "buffer_full"),))] == 6
    assert seen[("wincc_gateway_samples_dropped_total", (("reason", "storage"),))] == 8
    assert seen[("wincc_gateway_samples_dropped_total", (("reason", "too_large"),))] == 9
    assert seen[("wincc_gateway_samples_dropped_total", (("reason", "invalid"),))] == 1
    assert seen[("wincc_gateway_bad_quality_published_total", ())] == 5
    assert seen[("wincc_gateway_mqtt_connected", ())] == 1
    assert seen[("wincc_gateway_mqtt_reconnects_total", ())] == 2
    assert seen[("wincc_gateway_mqtt_published_total", ())] == 40
    assert seen[("wincc_gateway_wincc_up", ())] == 1
    assert seen[("wincc_gateway_wincc_errors_total", (("kind", "WinCCUnavailable"),))] == 3
    assert seen[("wincc_gateway_commands_total", (("result", "refused"),))] == 2
    assert seen[("wincc_gateway_buffer_messages", ())] == 0
    assert seen[("wincc_gateway_buffer_bytes", ())] == 8192
    assert seen[("wincc_gateway_buffer_max_bytes", ())] == 10_000
    assert seen[("wincc_gateway_backfilled_samples_total", (("group", "fast"),))] == 9
    assert seen[("wincc_gateway_build_info", (("version", __version__),))] == 1


# --- the server -------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def health_server(gateway: Any) -> AsyncIterator[str]:
    """A HealthServer for ``gateway`` on a free loopback port; yields its base URL."""
    server = HealthServer(LOOPBACK, gateway)
    task = asyncio.create_task(server.run())
    waiter = asyncio.create_task(server.listening.wait())
    await asyncio.wait({task, waiter}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        waiter.cancel()
        task.result()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def get_health(http: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with http.get(f"{url}/health") as response:
        return response.status, orjson.loads(await response.read())


async def health_until(
    http: aiohttp.ClientSession,
    url: str,
    predicate: Callable[[int, Any], bool],
    timeout: float = 30.0,
) -> tuple[int, Any]:
    """Ask /health every 50 ms until ``predicate(status, body)`` holds; fail after timeout."""
    async with asyncio.timeout(timeout):
        while True:
            status, body = await get_health(http, url)
            if predicate(status, body):
                return status, body
            await asyncio.sleep(0.05)


async def test_starting_until_the_gateway_polls() -> None:
    fresh = [SimpleNamespace(name="fast", interval=1.0, stats=PollStats())]
    gateway = stand_in(started=asyncio.Event(), pollers=fresh, alarm_poller=None)
    gateway.metrics = GatewayMetrics(gateway)
    async with health_server(gateway) as url, aiohttp.ClientSession() as http:
        status, body = await get_health(http, url)
        assert (status, body["status"], body["reasons"]) == (503, "starting", [])
        gateway.source.state = "down"
        assert (await get_health(http, url))[1]["reasons"] == ["wincc: source down"]
        gateway.source.state = "up"
        gateway.started.set()
        _, body = await health_until(http, url, lambda status, _: status == 200)
    assert body["status"] == "ok"


async def test_disabled_server_returns_at_once() -> None:
    server = HealthServer(HealthSettings(enabled=False), stand_in())
    await asyncio.wait_for(server.run(), 1)
    assert not server.listening.is_set()


async def test_a_taken_port_is_a_clear_error() -> None:
    async with health_server(stand_in()) as url:
        taken = HealthSettings(listen=url.removeprefix("http://"))
        with pytest.raises(GatewayError, match=r"health.listen 127.0.0.1:\d+: cannot listen"):
            await HealthServer(taken, stand_in()).run()


@pytest.mark.slow
async def test_health_follows_the_broker(
    simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    config = settings_for(simulator, mosquitto, tls, tmp_path)
    async with (
        running_gateway(config) as gateway,
        health_server(gateway) as url,
        aiohttp.ClientSession() as http,
    ):
        _, body = await health_until(http, url, lambda status, _: status == 200)
        assert body["status"] == "ok"
        assert body["mqtt"]["connected"] is True
        assert body["wincc"] == {"source": "up"}
        assert set(body["groups"]) == {"fast"}

        await mosquitto.stop()
        _, body = await health_until(http, url, lambda status, _: status == 503)
        assert body["status"] == "unhealthy"
        assert body["reasons"] == ["mqtt: not connected"]

        await mosquitto.start()
        async with asyncio.timeout(60):
            await gateway.session.connected.wait()
        assert (await get_health(http, url))[0] == 200


@pytest.mark.slow
async def test_health_follows_wincc(
    simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    config = settings_for(simulator, mosquitto, tls, tmp_path)

    def source_is(state: str) -> Callable[[list[Received]], bool]:
        return lambda ms: bool(ms) and ms[-1].json().get("source") == state

    async with (
        subscribe(mosquitto, f"{PREFIX}/status") as status_sub,
        running_gateway(config) as gateway,
        health_server(gateway) as url,
        aiohttp.ClientSession() as http,
    ):
        await status_sub.wait_for(source_is("up"))
        await health_until(http, url, lambda status, _: status == 200)

        simulator.faults.down = True
        await status_sub.wait_for(source_is("down"))
        status, body = await get_health(http, url)
        assert status == 503
        assert "wincc: source down" in body["reasons"]
        assert body["wincc"] == {"source": "down"}

        simulator.faults.down = False
        await status_sub.wait_for(source_is("up"))
        status, body = await health_until(http, url, lambda status, _: status == 200)
        assert body["wincc"] == {"source": "up"}


@pytest.mark.slow
async def test_metrics_move_with_real_traffic(
    simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    config = settings_for(simulator, mosquitto, tls, tmp_path)
    tag_topic = f"{PREFIX}/tags/System1/Area1/Tank1/Setpoint"
    refused_topic = f"{PREFIX}/cmd/write/System1/Area1/Tank1/Temperature"

    async def scrape(http: aiohttp.ClientSession, url: str) -> dict[Any, float]:
        async with http.get(f"{url}/metrics") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            return samples(await response.text())

    fast = (("group", "fast"),)
    async with (
        subscribe(mosquitto, f"{PREFIX}/tags/#", f"{PREFIX}/cmd/result") as sub,
        running_gateway(config) as gateway,
        health_server(gateway) as url,
        aiohttp.ClientSession() as http,
    ):
        await sub.wait_for(lambda ms: any(m.topic == tag_topic for m in ms))
        before = await scrape(http, url)
        assert before[("wincc_gateway_polls_total", fast)] >= 1
        assert before[("wincc_gateway_samples_read_total", fast)] >= 1
        assert before[("wincc_gateway_mqtt_connected", ())] == 1
        assert before[("wincc_gateway_wincc_up", ())] == 1
        assert ("wincc_gateway_commands_total", (("result", "refused"),)) not in before

        simulator.plant.force(SETPOINT, 4321.0, now_ms=now_ms())
        await sub.wait_for(lambda ms: any(b"4321.0" in m.payload for m in ms))
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
            await client.publish(refused_topic, b"20.0", qos=1)
        await sub.wait_for(lambda ms: any(m.topic == f"{PREFIX}/cmd/result" for m in ms))

        after = await scrape(http, url)
        moved = ["wincc_gateway_samples_published_total"]
        if simulator.options.dialect != "unified":  # subscribed: no poll between the scrapes
            moved += ["wincc_gateway_polls_total", "wincc_gateway_poll_duration_seconds_count"]
        for name in moved:
            assert after[(name, fast)] > before[(name, fast)], name
        # The broker acknowledged the new sample long before the command's round trip ended.
        published = ("wincc_gateway_mqtt_published_total", ())
        assert after[published] > before[published]
        assert after[("wincc_gateway_commands_total", (("result", "refused"),))] == 1


async def test_the_gateway_serves_health_and_metrics_on_its_listen_address(
    simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    health = {"enabled": True, "listen": "127.0.0.1:0"}
    config = settings_for(simulator, mosquitto, tls, tmp_path, health=health)
    polled = asyncio.Event()
    observe = lambda _group, _seconds: polled.set()  # noqa: E731
    async with (
        running_gateway(config, observe=observe) as gateway,
        aiohttp.ClientSession() as http,
    ):
        url = f"http://127.0.0.1:{gateway.health.port}"
        _, body = await health_until(http, url, lambda status, _: status == 200)
        assert body["status"] == "ok"
        await asyncio.wait_for(polled.wait(), 10)
        async with http.get(url + "/metrics") as response:
            text = await response.text()
    assert 'wincc_gateway_poll_duration_seconds_count{group="fast"}' in text


async def test_a_backlog_growing_while_the_broker_is_connected_is_logged_once_then_its_end(
    simulator: Simulator,
    mosquitto: Mosquitto,
    tls: TlsFiles,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A frozen broker keeps the connection but takes nothing: the backlog grows while
    connected, which is what a broker or machine too slow for the sample rate looks like."""
    monkeypatch.setattr(backlog_watch, "BACKLOG_WINDOW", 1.5)
    monkeypatch.setattr(backlog_watch, "BACKLOG_MARGIN", 50)
    simulator.faults.change_rate = 5.0
    poll = [{"name": "fast", "interval": "100ms", "tags": ["System1.**"]}]
    config = settings_for(simulator, mosquitto, tls, tmp_path, poll=poll)
    app_log = logging.getLogger("gateway.backlog_watch")
    lines = LogLines()
    app_log.addHandler(lines)
    level = app_log.level
    app_log.setLevel(logging.INFO)
    try:
        async with running_gateway(config) as gateway:
            await gateway.session.connected.wait()
            mosquitto.freeze()
            try:
                await lines.wait_for("publishing falls behind")
                assert gateway.session.connected.is_set()
            finally:
                mosquitto.thaw()
            await lines.wait_for("publishing caught up")
    finally:
        app_log.removeHandler(lines)
        app_log.setLevel(level)
    assert sum("publishing falls behind" in line for line in lines.seen) == 1, lines.seen


class LogLines(logging.Handler):
    """The messages logged, with a way to await one (the gateway logs from the loop)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []
        self._new = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append(record.getMessage())
        self._new.set()

    async def wait_for(self, text: str, timeout: float = 20) -> None:
        async with asyncio.timeout(timeout):
            while not any(text in line for line in self.seen):
                self._new.clear()
                await self._new.wait()
