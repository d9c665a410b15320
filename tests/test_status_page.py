"""The status page in a real browser (Debian's chromium, driven by Playwright) against a
running gateway, simulator and mosquitto; and its token, over plain HTTP.

CI installs chromium (.ci/run); elsewhere the browser tests are skipped, with the reason,
when it is missing. With WINCC_GATEWAY_CI set they fail instead.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import aiomqtt
import orjson
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.app import Gateway
from gateway.core.timestamps import now_ms
from gateway.core.topics import tag_path
from gateway.simulator.server import Simulator, SimulatorOptions
from tests.conftest import Mosquitto, TlsFiles
from tests.gateway_harness import PREFIX, running_gateway, settings_for

pytestmark = pytest.mark.slow

WINCC_PASSWORD = "Wincc-Pw-7f3a9c"
MQTT_PASSWORD = "Mqtt-Pw-51be2d"
TOKEN = "Page-Token-c0ffee42"
SECRETS = (WINCC_PASSWORD, MQTT_PASSWORD, TOKEN)
SETPOINT = "System1.Area1.Tank1.Setpoint"


def chromium() -> str:
    """Debian's chromium, and Playwright to drive it."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        import playwright.async_api  # noqa: F401, PLC0415 - only to say it is missing
    except ImportError:
        reason = "playwright is not installed: pip install -e '.[dev]'"
    else:
        if found is not None:
            return found
        reason = "chromium is not installed: apt-get install -y chromium"
    if os.environ.get("WINCC_GATEWAY_CI"):
        pytest.fail(f"the browser tests are required in CI: {reason}")
    pytest.skip(f"the browser tests cannot run: {reason}")


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """A headless chromium."""
    executable = chromium()
    from playwright.async_api import async_playwright  # noqa: PLC0415 - may be missing

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=executable, headless=True, args=["--no-sandbox"]
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def guarded_simulator(tls: TlsFiles) -> AsyncIterator[Simulator]:
    """The simulator with a password the page must never show, and active alarms."""
    options = SimulatorOptions(
        port=0, tags=200, alarms=5, change_rate=0.0, seed=7, password=WINCC_PASSWORD
    )
    async with Simulator(options, ssl_context=tls.server_context()) as sim:
        for alarm_id in list(sim.plant.alarms)[:2]:
            sim.plant.raise_alarm(alarm_id, now_ms=now_ms())
        yield sim


def page_config(
    sim: Simulator, broker: Mosquitto, tls: TlsFiles, tmp_path: Path, **health: Any
) -> dict[str, Any]:
    """Health server (with its page) on a free loopback port, passwords everywhere."""
    config = settings_for(
        sim,
        broker,
        tls,
        tmp_path,
        health={"enabled": True, "listen": "127.0.0.1:0", **health},
        commands={"writable": [SETPOINT]},
    )
    config["wincc"]["password"] = WINCC_PASSWORD
    config["mqtt"].update(username="gateway", password=MQTT_PASSWORD)
    return config


@contextlib.asynccontextmanager
async def page_of(config: dict[str, Any]) -> AsyncIterator[tuple[Gateway, str]]:
    """The gateway running, and the base URL of its status page."""
    async with running_gateway(config) as gateway:
        await gateway.health.listening.wait()
        yield gateway, f"http://127.0.0.1:{gateway.health.port}"


async def first_event(http: aiohttp.ClientSession, url: str, **kwargs: Any) -> bytes:
    """The first server-sent event of the page's stream, raw."""
    async with http.get(f"{url}/events", **kwargs) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/event-stream"
        event = b""
        async for line in response.content:
            if line == b"\n" and event:
                return event
            event += line
    raise AssertionError("the stream ended without an event")


async def test_the_page_shows_the_gateway_live_and_no_secret(
    guarded_simulator: Simulator,
    mosquitto: Mosquitto,
    tls: TlsFiles,
    tmp_path: Path,
    browser: Any,
) -> None:
    from playwright.async_api import expect  # noqa: PLC0415 - may be missing

    sim = guarded_simulator
    config = page_config(sim, mosquitto, tls, tmp_path)
    async with page_of(config) as (gateway, url), aiohttp.ClientSession() as http:
        page = await browser.new_page()
        requested: list[str] = []
        page.on("request", lambda request: requested.append(request.url))
        await page.goto(url + "/")
        tags = sum(len(feed.tags) for feed in gateway.pollers)
        await expect(page.locator("#tag-count")).to_have_text(str(tags), timeout=5000)
        await expect(page.locator("#wincc-state")).to_have_attribute("data-state", "up")
        await expect(page.locator("#mqtt-state")).to_have_attribute("data-state", "connected")
        loaded_ms = float(await page.evaluate("document.body.dataset.firstSnapshotMs"))
        print(f"status page: first snapshot rendered {loaded_ms:.0f} ms after navigation")
        raised = [alarm.id for alarm in sim.plant.active_alarms()]
        assert raised
        for alarm_id in raised:
            await expect(page.locator("#alarms")).to_contain_text(alarm_id, timeout=5000)
        await expect(page.locator("#alarm-count")).to_have_text(f"{len(raised)} active")

        sim.faults.down = True
        await expect(page.locator("#wincc-state")).to_have_attribute(
            "data-state", "down", timeout=2000
        )
        await expect(page.locator("#wincc-state")).to_have_css(
            "background-color", "rgb(198, 40, 40)"
        )
        sim.faults.down = False
        await expect(page.locator("#wincc-state")).to_have_attribute(
            "data-state", "up", timeout=10_000
        )
        await expect(page.locator("#wincc-state")).to_have_css(
            "background-color", "rgb(31, 138, 59)"
        )

        claimed = Properties(PacketTypes.PUBLISH)
        claimed.UserProperty = [("client_id", "hmi-panel-3")]
        async with aiomqtt.Client(
            "127.0.0.1", mosquitto.port, protocol=aiomqtt.ProtocolVersion.V5
        ) as client:
            await client.publish(
                f"{PREFIX}/cmd/write/{tag_path(SETPOINT)}",
                orjson.dumps({"value": 17.5, "id": "page-write-1"}),
                qos=1,
                properties=claimed,
            )
            await client.publish(
                f"{PREFIX}/cmd/write/{tag_path('System1.Area1.Tank1.Level')}",
                orjson.dumps({"value": 1, "id": "page-write-2"}),
                qos=1,
            )
        commands = page.locator("#commands tr")
        written = commands.filter(has_text="page-write-1")
        await expect(written).to_contain_text("ok", timeout=5000)
        await expect(written).to_contain_text("hmi-panel-3")
        await expect(commands.filter(has_text="page-write-2")).to_contain_text(
            "refused: tag is not in commands.writable"
        )
        await expect(page.locator("#changes")).to_contain_text(SETPOINT, timeout=5000)

        await page.fill("#tag-filter", "Tank1.Setpoint")
        await expect(page.locator("#changes tr").first).to_contain_text(SETPOINT)
        await expect(page.locator("#changes")).not_to_contain_text("Level", timeout=5000)

        # The chart draws both series over the seconds seen so far.
        for line in ("#line-rate", "#line-depth"):
            points = await page.locator(line).get_attribute("points")
            assert points is not None
            assert len(points.split()) >= 3, points
        # Offline: nothing but the page and its stream was asked for.
        assert requested
        assert all(address.startswith(url + "/") for address in requested), requested

        text = await page.inner_text("body") + await page.content()
        stream = (await first_event(http, url)).decode()
        for secret in SECRETS:
            assert secret not in text
            assert secret not in stream
        await page.close()


async def test_a_token_guards_the_page_not_health_or_metrics(
    guarded_simulator: Simulator,
    mosquitto: Mosquitto,
    tls: TlsFiles,
    tmp_path: Path,
    browser: Any,
) -> None:
    from playwright.async_api import expect  # noqa: PLC0415 - may be missing

    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n", encoding="utf-8")
    config = page_config(guarded_simulator, mosquitto, tls, tmp_path, token_file=str(token_file))
    async with page_of(config) as (_, url), aiohttp.ClientSession() as http:
        for path in ("/", "/events", "/?token=wrong"):
            async with http.get(url + path) as response:
                assert response.status == 401, path
                assert TOKEN not in await response.text()
        async with http.get(url + "/", headers={"Authorization": "Bearer wrong"}) as response:
            assert response.status == 401
        async with http.get(url + "/health") as response:
            assert response.status in (200, 503)
        async with http.get(url + "/metrics") as response:
            assert response.status == 200
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        assert b'"wincc"' in await first_event(http, url, headers=bearer)

        with_header = await browser.new_context(extra_http_headers=bearer)
        page = await with_header.new_page()
        await page.goto(url + "/")
        await expect(page.locator("#wincc-state")).to_have_attribute("data-state", "up")
        await with_header.close()

        with_cookie = await browser.new_context()
        page = await with_cookie.new_page()
        await page.goto(f"{url}/?token={TOKEN}")
        assert page.url == url + "/"  # the token left the address bar
        await expect(page.locator("#wincc-state")).to_have_attribute("data-state", "up")
        (cookie,) = await with_cookie.cookies()
        assert cookie["httpOnly"] is True
        assert cookie["sameSite"] == "Strict"
        assert TOKEN not in await page.content()
        await with_cookie.close()
