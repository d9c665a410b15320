"""``wincc-gateway demo``: the real CLI in a subprocess with stdout a pipe, and its parts."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import re
import shlex
import shutil
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import aiomqtt
import orjson
import pytest
from rich.console import Console

from gateway.config import PollGroup
from gateway.demo.run import DemoPlan, banner_lines, demo_settings, run_demo
from gateway.demo.view import DemoView
from gateway.wincc.settings import RestSettings

ROOT = Path(__file__).resolve().parent.parent
START_LIMIT = 5.0  # seconds from the command to the first data on the broker
FIRST_SAMPLES = re.compile(r"first samples after (?P<after>[\d.]+)s: ")
SUB_HINT = re.compile(r"^\s*(?P<command>mosquitto_sub .*)$")
PUB_HINT = re.compile(r"^\s*(?P<command>mosquitto_pub .*)$")
STATUS_PAGE = re.compile(r"^Status page: (?P<url>http://127\.0\.0\.1:\d+/)$")


class DemoProcess:
    """``python -m gateway demo`` whose stdout is read line by line as it comes."""

    def __init__(self, process: asyncio.subprocess.Process, started: float) -> None:
        self.process = process
        self.started = started
        self.lines: list[str] = []

    async def line_matching(self, pattern: re.Pattern[str], timeout: float = 15.0) -> re.Match[str]:
        """Read stdout until a line matches (lines read before are searched first)."""
        for line in self.lines:
            if match := pattern.search(line):
                return match
        stdout = self.process.stdout
        assert stdout is not None
        async with asyncio.timeout(timeout):
            while raw := await stdout.readline():
                line = raw.decode()
                self.lines.append(line)
                if match := pattern.search(line):
                    return match
        pytest.fail(f"the demo ended without printing {pattern.pattern!r}:\n{self.output()}")

    async def interrupt(self) -> tuple[int, str]:
        """Ctrl-C; the exit code and stderr once the demo has stopped."""
        self.process.send_signal(signal.SIGINT)
        async with asyncio.timeout(15):
            rest, err = await self.process.communicate()
        self.lines.extend(rest.decode().splitlines(keepends=True))
        assert self.process.returncode is not None
        return self.process.returncode, err.decode()

    def output(self) -> str:
        """Everything read from stdout so far."""
        return "".join(self.lines)


@contextlib.asynccontextmanager
async def demo_process() -> AsyncIterator[DemoProcess]:
    """The demo with 50 tags, and ``GATEWAY_*`` variables it has to ignore."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"}
    }
    env["GATEWAY_MQTT__URL"] = "mqtt://192.0.2.1:1883"  # TEST-NET: would never connect
    env["GATEWAY_MQTT__TOPIC_PREFIX"] = "not/the/demo"
    loop = asyncio.get_running_loop()
    started = loop.time()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        "demo",
        "--tags",
        "50",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )
    try:
        yield DemoProcess(process, started)
    finally:
        if process.returncode is None:
            process.kill()
            await process.communicate()


def mosquitto_client(name: str) -> str:
    """mosquitto_sub / mosquitto_pub from PATH."""
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: apt-get install -y mosquitto-clients")
    return found


@pytest.mark.slow
async def test_demo_shows_data_within_5s_and_stops_cleanly_on_sigint() -> None:
    async with demo_process() as demo:
        match = await demo.line_matching(FIRST_SAMPLES)
        waited = asyncio.get_running_loop().time() - demo.started
        assert waited < START_LIMIT, f"first data {waited:.1f}s after the start"
        assert float(match["after"]) < START_LIMIT
        code, err = await demo.interrupt()
    assert code == 0, err
    assert "Traceback" not in err, err
    assert "status set to offline" in err  # the gateway stopped in order, not killed
    assert "demo stopped:" in demo.output()


@pytest.mark.slow
async def test_banner_hints_work_with_the_real_port() -> None:
    async with demo_process() as demo:
        sub = shlex.split((await demo.line_matching(SUB_HINT))["command"])
        pub = shlex.split((await demo.line_matching(PUB_HINT))["command"])
        port = int(sub[sub.index("-p") + 1])
        assert int(pub[pub.index("-p") + 1]) == port
        command_topic = pub[pub.index("-t") + 1]
        tag_topic = command_topic.replace("/cmd/write/", "/tags/")
        await demo.line_matching(FIRST_SAMPLES)

        watched = await asyncio.create_subprocess_exec(
            mosquitto_client("mosquitto_sub"),
            *sub[1:],
            "-C",
            "1",
            "-W",
            "10",
            stdout=asyncio.subprocess.PIPE,
        )
        seen, _ = await watched.communicate()
        assert watched.returncode == 0
        assert seen.decode().startswith("wincc/demo/")

        client = aiomqtt.Client(
            "127.0.0.1", port, identifier="test-demo-hints", protocol=aiomqtt.ProtocolVersion.V311
        )
        async with client:
            await client.subscribe("wincc/demo/cmd/result")
            await client.subscribe(tag_topic)
            sent = await asyncio.create_subprocess_exec(mosquitto_client("mosquitto_pub"), *pub[1:])
            assert await sent.wait() == 0
            result: dict[str, object] | None = None
            written = False
            async with asyncio.timeout(10):
                async for message in client.messages:
                    payload = message.payload
                    assert isinstance(payload, bytes)
                    if message.topic.matches("wincc/demo/cmd/result"):
                        result = orjson.loads(payload)
                    elif message.topic.matches(tag_topic) and payload:
                        written = written or orjson.loads(payload)["value"] == 42
                    if result is not None and written:
                        break
        assert result is not None
        assert result["id"] == "demo-1"
        assert result["ok"] is True, result
        code, err = await demo.interrupt()
    assert code == 0, err
    assert "Traceback" not in err, err


@pytest.mark.slow
async def test_retained_messages_reach_only_the_subscriptions_they_match() -> None:
    """A user's mosquitto_sub to topics without retained messages gets none of the
    gateway's retained tags or alarms, only the retained status it subscribed to."""
    async with demo_process() as demo:
        sub = shlex.split((await demo.line_matching(SUB_HINT))["command"])
        port = sub[sub.index("-p") + 1]
        await demo.line_matching(FIRST_SAMPLES)
        await demo.line_matching(re.compile(r"alarms active"))  # retained tags and alarms
        broker = ["-h", "127.0.0.1", "-p", port, "-V", "mqttv311"]
        watched = await asyncio.create_subprocess_exec(
            mosquitto_client("mosquitto_sub"),
            *broker,
            *("-t", "nothing/here", "-t", "wincc/demo/cmd/result", "-t", "wincc/demo/status"),
            *("-v", "-C", "2", "-W", "10"),
            stdout=asyncio.subprocess.PIPE,
        )
        assert watched.stdout is not None
        first = await asyncio.wait_for(watched.stdout.readline(), 10)
        # The status came; a marker published now arrives after anything retained would.
        marker = await asyncio.create_subprocess_exec(
            mosquitto_client("mosquitto_pub"), *broker, "-q", "1", "-t", "nothing/here", "-m", "end"
        )
        assert await marker.wait() == 0
        rest, _ = await watched.communicate()
        lines = [first.decode(), *rest.decode().splitlines(keepends=True)]
        assert watched.returncode == 0, lines
        assert lines[0].startswith("wincc/demo/status {"), lines
        assert lines[1:] == ["nothing/here end\n"], lines
        code, err = await demo.interrupt()
    assert code == 0, err


@pytest.mark.slow
async def test_demo_prints_the_status_page_address() -> None:
    async with demo_process() as demo:
        url = (await demo.line_matching(STATUS_PAGE))["url"]
        async with aiohttp.ClientSession() as http, http.get(url) as response:
            assert response.status == 200
            assert "<title>wincc-gateway status</title>" in await response.text()
        code, err = await demo.interrupt()
    assert code == 0, err


async def test_run_demo_in_process_stops_after_duration() -> None:
    out = io.StringIO()
    assert await run_demo(tags=30, duration=2.0, console=Console(file=out, width=100)) == 0
    text = out.getvalue()
    assert FIRST_SAMPLES.search(text), text
    assert "demo stopped:" in text


async def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert await run_demo(tags=0, broker_port=70000) == 2
    err = capsys.readouterr().err
    assert "--tags" in err
    assert "--broker-port" in err


def test_view_folds_samples_alarms_and_status() -> None:
    view = DemoView("wincc/demo", started=100.0)
    view.handle("wincc/demo/status", b'{"state": "online", "source": "up"}', 100.1)
    view.handle(
        "wincc/demo/tags/System1/Area1/Tank1/Level",
        b'{"value": 12.5, "quality": 128, "good": true, "ts": "2026-11-24T10:00:00.123Z", '
        b'"seq": 1}',
        100.5,
    )
    view.handle(
        "wincc/demo/tags/System1/Area1/Pump1/Speed",
        b'{"value": 0.0, "quality": 12, "good": false, "quality_text": "bad: device failure", '
        b'"ts": "2026-11-24T10:00:00.200Z", "seq": 7}',
        101.0,
    )
    view.handle("wincc/demo/alarms/1001", b'{"id": "1001", "text": "High", "priority": 8}', 101.0)
    view.handle("wincc/demo/alarms/1002", b'{"id": "1002", "text": "Low", "priority": 5}', 101.0)
    view.handle("wincc/demo/alarms/events", b'{"event": "came"}', 101.0)
    view.handle("wincc/demo/alarms/1002", b"", 101.5)
    view.handle("wincc/demo/tags/System1/Area1/Tank1/Level", b"not json", 101.5)

    assert list(view.tags) == ["System1.Area1.Tank1.Level", "System1.Area1.Pump1.Speed"]
    assert view.tags["System1.Area1.Pump1.Speed"].quality == "bad: device failure"
    assert (view.samples, view.not_good, view.unreadable) == (2, 1, 1)
    assert list(view.alarms) == ["1001"]
    assert view.alarm_events == 1
    assert view.first_sample_after == pytest.approx(0.5)
    assert view.got_samples.is_set()
    assert view.rate(102.0) == pytest.approx(8 / 2.0)
    assert view.first_sample_line().startswith("first samples after 0.50s: System1.Area1.Pump1")
    assert "gateway online (WinCC up)" in view.summary(102.0)

    out = io.StringIO()
    Console(file=out, width=140).print(view.render(102.0, height=40))
    screen = out.getvalue()
    assert "System1.Area1.Pump1.Speed" in screen
    assert "bad: device failure" in screen
    assert "High" in screen


def test_demo_settings_ignore_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GATEWAY_MQTT__URL", "mqtt://192.0.2.1:1883")
    monkeypatch.setenv("GATEWAY_HEALTH__LISTEN", "0.0.0.0:9100")
    wincc = RestSettings(url="http://127.0.0.1:8443", allow_insecure_http=True)
    plan = DemoPlan([PollGroup(name="fast", tags=["System1.Area1.**"])], None)
    settings = demo_settings(wincc, plan, 1884, tmp_path)
    assert settings.mqtt.url == "mqtt://127.0.0.1:1884"
    assert settings.mqtt.protocol == 311
    assert settings.mqtt.topic_prefix == "wincc/demo"
    assert settings.health.listen == "127.0.0.1:0"  # the status page, loopback only
    assert settings.buffer.path.parent == tmp_path


def test_banner_without_a_setpoint_offers_no_write_command() -> None:
    plan = DemoPlan([PollGroup(name="fast", tags=["System1.Area1.**"])], None)
    lines = banner_lines(
        sim_url="http://127.0.0.1:1", broker_port=1883, plan=plan, tags=1, alarms=0
    )
    assert any("mosquitto_sub -h 127.0.0.1 -p 1883 " in line for line in lines)
    assert not any("mosquitto_pub" in line for line in lines)
