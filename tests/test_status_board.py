"""What the status page is made of, without a browser: the rings, the buffer's age trail,
the snapshot's rules, the token; then its stream against a real gateway and broker."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import orjson
import pytest
from pydantic import SecretStr, ValidationError

from gateway.buffer.ages import AgeTrail
from gateway.config import HealthSettings
from gateway.core.models import Reading
from gateway.health import SHUTDOWN_TIMEOUT, HealthServer
from gateway.recent import RecentChanges, RecentCommands
from gateway.simulator.server import Simulator
from gateway.sink import PollStats
from gateway.status_page import StatusBoard, public_text, public_url
from gateway.status_web import token_matches
from tests.conftest import Mosquitto, TlsFiles, logged
from tests.gateway_harness import running_gateway, settings_for


def batch(*names: str, ts: int = 0) -> list[tuple[Reading, int]]:
    return [(Reading(name, 1.0, 128, ts), 1) for name in names]


def test_last_changes_newest_first_filtered_by_tag() -> None:
    changes = RecentChanges()
    changes.add("fast", batch("Area1.Pump1.Speed", "Area1.Tank1.Level"))
    changes.add("slow", batch("Area2.Pump2.Speed"))
    changes.add("slow", [])
    assert [c.tag for c in changes.newest(10)] == [
        "Area2.Pump2.Speed",
        "Area1.Tank1.Level",
        "Area1.Pump1.Speed",
    ]
    assert [(c.group, c.tag) for c in changes.newest(10, "pump")] == [
        ("slow", "Area2.Pump2.Speed"),
        ("fast", "Area1.Pump1.Speed"),
    ]
    assert [c.tag for c in changes.newest(1)] == ["Area2.Pump2.Speed"]
    assert changes.newest(10, "nothing") == []


def test_last_changes_keep_bounded_memory_whatever_the_batch_sizes() -> None:
    changes = RecentChanges(kept=100)
    for n in range(50):
        changes.add("big", batch(*(f"T{n}.{i}" for i in range(30))))
    held = sum(len(decided) for _, decided in changes._batches)
    assert 100 <= held < 130  # whole batches, the oldest gone
    newest = changes.newest(1000)
    assert len(newest) == 100  # never more looked at than kept
    assert newest[0].tag == "T49.29"
    assert changes.newest(10, "T0.") == []  # forgotten


def test_last_commands_newest_first_and_bounded() -> None:
    commands = RecentCommands(kept=3)
    for n in range(5):
        commands.add(
            kind="tag", target="A.Setpoint", request_id=f"id-{n}", sender="hmi", outcome="ok",
            error=None,
        )  # fmt: skip
    assert [c.request_id for c in commands.newest()] == ["id-4", "id-3", "id-2"]


def test_oldest_message_age_follows_commits_and_acks() -> None:
    trail = AgeTrail()
    assert trail.oldest_age(100.0, depth=0) == 0.0
    trail.committed(1, 10, now=100.0)
    trail.committed(11, 20, now=100.5)  # within a second: the same mark
    trail.committed(21, 30, now=102.0)
    assert trail.oldest_age(105.0, depth=30) == 5.0
    trail.gone(20)
    assert trail.oldest_age(105.0, depth=10) == 3.0
    trail.gone(30)
    assert trail.oldest_age(106.0, depth=0) == 0.0
    trail.committed(31, 31, now=110.0)
    assert trail.oldest_age(111.0, depth=1) == 1.0  # not measured from the emptied marks


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:secret@wincc.example:8443/api?token=x#f", "https://wincc.example:8443/api"),
        ("mqtts://gw:pw@broker.example", "mqtts://broker.example"),
        ("http://[::1]:9000/graphql/", "http://[::1]:9000/graphql/"),
    ],
)
def test_urls_are_shown_without_credentials(url: str, shown: str) -> None:
    assert public_url(url) == shown


def test_error_texts_lose_credentials_of_urls() -> None:
    text = public_text("cannot reach https://op:hunter2@wincc.example/api: timeout")
    assert text == "cannot reach https://wincc.example/api: timeout"
    assert len(public_text("x" * 1000)) == 300


def stand_in() -> Any:
    """A gateway-shaped object for the board."""
    connected = asyncio.Event()
    connected.set()
    return SimpleNamespace(
        started=connected,
        settings=SimpleNamespace(
            wincc=SimpleNamespace(dialect="rest", urls=["https://op:pw@wincc.example"]),
            mqtt=SimpleNamespace(urls=["mqtt://broker.example:1883"]),
        ),
        session=SimpleNamespace(connected=connected, reconnects=0, published=0, dropped={}),
        source=SimpleNamespace(state="up", since_ms=0, errors_by_kind={}, last_error=None),
        decider=SimpleNamespace(withheld=0),
        commands=SimpleNamespace(recent=RecentCommands()),
        pollers=[SimpleNamespace(name="fast", interval=1.0, tags=["A", "B"], stats=PollStats())],
        alarm_poller=None,
        buffer=SimpleNamespace(
            depth=3,
            size_bytes=4096,
            max_size=10_000,
            dropped=0,
            storage_dropped=0,
            storage_error=None,
            oldest_age=lambda: 2.04,
        ),
        changes=RecentChanges(),
    )


def test_board_rates_and_trend_from_ticks() -> None:
    gateway = stand_in()
    board = StatusBoard(gateway)
    board.tick(10.0)
    gateway.session.published = 50
    gateway.pollers[0].stats.readings = 400
    board.tick(12.0)
    snapshot = board.snapshot(12.5, history=True)
    assert snapshot["mqtt"]["publish_rate"] == 25.0
    assert snapshot["wincc"]["url"] == "https://wincc.example"
    (group,) = snapshot["groups"]
    assert (group["tags"], group["samples_per_s"], group["last_poll_age_s"]) == (2, 200.0, None)
    assert snapshot["buffer"]["oldest_age_s"] == 2.0
    assert [point[1:] for point in snapshot["history"]] == [(25.0, 3)]
    gateway.session.published = 60
    board.tick(13.0)
    later = board.snapshot(13.0)
    assert [point[1:] for point in later["history"]] == [(10.0, 3)]  # only the newest
    assert later["history_full"] is False


def test_token_from_a_file_and_compared_in_constant_time(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("s3cret\n", encoding="utf-8")
    settings = HealthSettings(token_file=secret)
    assert settings.token is not None
    assert token_matches("s3cret", settings.token)
    assert not token_matches("s3cre", settings.token)
    assert not token_matches(None, settings.token)
    with pytest.raises(ValidationError, match="both set"):
        HealthSettings(token=SecretStr("a"), token_file=secret)
    with pytest.raises(ValidationError, match="token is empty"):
        HealthSettings(token=SecretStr(""))
    assert "s3cret" not in repr(settings)


@pytest.mark.parametrize(("token", "warned"), [(None, True), ("s3cret", False)])
async def test_a_page_open_to_the_network_is_warned_about(token: str | None, warned: bool) -> None:
    settings = HealthSettings(listen="0.0.0.0:0", token=token)
    with logged("gateway.health", "set health.token") as warning:
        server = HealthServer(settings, stand_in())
        task = asyncio.create_task(server.run())
        try:
            async with asyncio.timeout(10):
                await server.listening.wait()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert warning.is_set() is warned


# --- the stream, against a real gateway ----------------------------------------------------


async def next_snapshot(lines: aiohttp.StreamReader) -> dict[str, Any]:
    """The next server-sent event, decoded."""
    data = b""
    async for line in lines:
        if line == b"\n" and data:
            return dict(orjson.loads(data.removeprefix(b"data: ")))
        data += line
    raise AssertionError("the stream ended")


@pytest.mark.slow
async def test_the_stream_follows_a_broker_outage_and_ends_with_the_gateway(
    simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    config = settings_for(
        simulator, mosquitto, tls, tmp_path, health={"enabled": True, "listen": "127.0.0.1:0"}
    )
    simulator.faults.change_rate = 5.0  # samples keep coming while the broker is away
    async with aiohttp.ClientSession() as http:
        async with running_gateway(config) as gateway:
            response = await http.get(f"http://127.0.0.1:{gateway.health.port}/events")
            first = await next_snapshot(response.content)
            assert first["history_full"] is True
            assert first["mqtt"]["connected"] is True
            await mosquitto.stop()
            async with asyncio.timeout(30):
                while True:
                    snapshot = await next_snapshot(response.content)
                    buffer = snapshot["buffer"]
                    if buffer["depth"] > 0 and buffer["oldest_age_s"] >= 2:
                        break
            assert snapshot["mqtt"]["connected"] is False
            assert snapshot["history"][-1][2] > 0  # the chart's buffer depth
            await mosquitto.start()
            async with asyncio.timeout(60):
                while (await next_snapshot(response.content))["buffer"]["depth"] > 0:
                    pass
            # The gateway stops with the page still open: the stream ends at once, the
            # server does not wait for its shutdown timeout to cut it.
            loop = asyncio.get_running_loop()
            ended: list[float] = []
            rest = asyncio.create_task(response.content.read())
            rest.add_done_callback(lambda _: ended.append(loop.time()))
            stopping = loop.time()
        async with asyncio.timeout(5):
            await rest
        assert response.content.at_eof()
        assert ended[0] - stopping < SHUTDOWN_TIMEOUT
        response.release()
