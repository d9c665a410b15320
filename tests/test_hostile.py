"""Nothing WinCC sends, and nothing a previous run left on disk, stops the gateway.

The gateway runs in-process against a real mosquitto; state left in the buffer file is
damaged by hand before it starts.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import aiomqtt
import orjson
import pytest
from aiohttp import web

from gateway.buffer.store import _SCHEMA
from gateway.simulator.classic import BASE_PATH as CLASSIC_PATH
from gateway.simulator.server import Simulator
from tests.conftest import Mosquitto, TlsFiles, free_port, subscribe
from tests.gateway_harness import PREFIX, running_gateway, settings_for

TAG = "System1.Area1.Tank1.Level"
OLD_ALARM = {  # as a version before four-digit years stored an alarm that never went
    "id": "gone-1",
    "tag": TAG,
    "text": "High level",
    "priority": 1,
    "state": "came",
    "acked": False,
    "came_at": "2026-11-24T09:00:00.000Z",
    "went_at": "1-01-01T00:00:00.000Z",
    "acked_at": None,
}


def damage(path: Path) -> None:
    """A buffer file whose tag and alarm states cannot all be read."""
    with sqlite3.connect(path) as db:
        db.executescript(_SCHEMA)
        db.executemany(
            "INSERT INTO tag_state (name, seq, value, quality) VALUES (?, ?, ?, ?)",
            [
                (TAG, "seven", b"1.5", 128),  # a seq that is no number
                ("System1.Area1.Tank1.Temperature", 41, b"{not json", 128),
                ("System1.Area1.Tank1.Pressure", 12, b"[" * 2000, 128),
                ("System1.Area1.Tank2.Level", 3, b"2.5", 128),  # intact
            ],
        )
        db.execute(  # a name that is not UTF-8
            "INSERT INTO tag_state (name, seq, value, quality) "
            "VALUES (CAST(x'ff61' AS TEXT), 1, '1', 192)"
        )
        db.executemany(
            "INSERT INTO outbox (topic, payload, qos, retain) VALUES (?, ?, ?, ?)",
            [
                (f"{PREFIX}/left/over", b"kept", 1, 0),
                (f"{PREFIX}/+/wild", b"x", 1, 0),
                (f"{PREFIX}/left/qos", b"x", 7, 0),
                (f"{PREFIX}/left/text", "not bytes", 1, 0),
            ],
        )
        db.executemany(
            "INSERT INTO alarm_state (id, body) VALUES (?, ?)",
            [("gone-1", orjson.dumps(OLD_ALARM)), ("gone-2", b"\xff\xfe"), ("gone-3", "text")],
        )
        db.execute("INSERT INTO poll_mark VALUES ('fast', 'yesterday', 0)")  # no time


async def test_state_that_cannot_be_read_is_dropped_with_a_warning_and_the_gateway_runs(
    simulator: Simulator,
    mosquitto: Mosquitto,
    tls: TlsFiles,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = settings_for(simulator, mosquitto, tls, tmp_path)
    damage(tmp_path / "buffer.db")
    caplog.set_level(logging.WARNING)
    async with (
        subscribe(mosquitto, f"{PREFIX}/alarms/+", f"{PREFIX}/tags/#", f"{PREFIX}/left/#") as sub,
        running_gateway(config),
    ):
        # The alarms whose states could not be read are cleared, not left retained.
        await sub.wait_for(
            lambda msgs: all(
                any(m.topic == f"{PREFIX}/alarms/{i}" and m.payload == b"" for m in msgs)
                for i in ("gone-1", "gone-2", "gone-3")
            )
        )
        await sub.wait_for(lambda msgs: any(m.topic == f"{PREFIX}/left/over" for m in msgs))
        level = f"{PREFIX}/tags/{TAG.replace('.', '/')}"
        await sub.wait_for(lambda msgs: any(m.topic == level for m in msgs))
    text = caplog.text
    assert "dropped stored tag state that cannot be read" in text
    assert f"'{TAG}' (its seq and last value)" in text
    assert "'System1.Area1.Tank1.Temperature' (its last value)" in text
    assert "'System1.Area1.Tank1.Pressure' (its last value)" in text
    assert "Tank2.Level" not in text
    assert "'\ufffda' (its last value)" not in text  # a name is a name, readable or not
    assert "dropped 3 stored messages that cannot be sent (damaged rows 2, 3, 4)" in text
    assert [m.topic for m in sub.messages if "/left/" in m.topic] == [f"{PREFIX}/left/over"]
    for alarm_id in ("gone-1", "gone-2", "gone-3"):
        assert f"stored state of alarm '{alarm_id}'" in text
    assert "dropped the last good poll of group 'fast', which cannot be read" in text
    with sqlite3.connect(tmp_path / "buffer.db") as db:
        seqs = dict(
            db.execute("SELECT name, seq FROM tag_state WHERE name != CAST(x'ff61' AS TEXT)")
        )
    assert seqs["System1.Area1.Tank1.Temperature"] >= 41  # the seq of a tag went on
    assert isinstance(seqs[TAG], int)


DEEP = "[" * 1000 + "]" * 1000
"""A value nested 1000 levels deep, under orjson's own limit of 1024."""
TS = "2026-11-24T09:00:00.000Z"


TYPES = [
    ("Good", "REAL"),
    ("Late", "Float"),
    ("Old", "Int16"),
    ("Deep", "DINT"),
    ("Odd", "Matrix"),
    ("Unit.On", "Boolean"),
]
"""The tags under ``Plant`` and the type names the server gives them."""
VALUES: dict[str, tuple[str, str]] = {  # name -> (value as JSON, timestamp)
    "Plant.Good": ("1.5", TS),
    "Plant.Late": ("2.5", "9999-12-31T23:59:59-14:00"),
    "Plant.Old": ("7", "0001-01-01T00:00:00Z"),
    "Plant.Deep": (DEEP, TS),
    "Plant.Odd": ('{"re": 1, "im": [2, 3]}', TS),
    "Plant.Unit.On": ("true", TS),
}


def json_items(names: list[str], name_key: str, quality_key: str) -> str:
    """Read items as JSON text: a value 1000 levels deep is more than orjson writes."""
    return ", ".join(
        f'{{"{name_key}": "{name}", "value": {VALUES[name][0]}, "{quality_key}": 192, '
        f'"timestamp": "{VALUES[name][1]}"}}'
        for name in names
    )


def rest_app() -> web.Application:
    """A ``rest`` server answering what real ones have sent and worse: a time past 9999
    once its offset is applied, the .NET minimum date, a value 1000 levels deep, folders
    typed "folder" and "struct", type names of every dialect and one nobody knows."""

    def child(name: str, kind: str, *, folder: bool = False) -> dict[str, Any]:
        return {"name": name, "type": kind, "has_children": folder, "writable": not folder}

    children = {
        "": [child("Plant", "folder", folder=True)],
        "Plant.": [
            child("Plant.Unit", "struct", folder=True),
            *(child(f"Plant.{name}", kind) for name, kind in TYPES if "." not in name),
        ],
        "Plant.Unit.": [child("Plant.Unit.On", "Boolean")],
    }
    never = "0001-01-01T00:00:00Z"
    late = "9999-12-31T23:59:59-14:00"
    alerts = [
        {"id": "ok", "state": "went", "came_at": TS, "went_at": TS, "acked_at": never},
        {"id": "bad", "state": "came", "came_at": late, "went_at": None, "acked_at": None},
    ]
    for alert in alerts:
        alert.update(tag="Plant.Good", text="t", priority=1, acked=False)

    async def login(request: web.Request) -> web.Response:
        return web.json_response({"token": "t"})

    async def browse(request: web.Request) -> web.Response:
        return web.json_response({"children": children.get(request.query["path"], [])})

    async def read(request: web.Request) -> web.Response:
        names = (await request.json())["names"]
        return web.Response(body='{"values": [' + json_items(names, "name", "quality") + "]}")

    async def active(request: web.Request) -> web.Response:
        return web.json_response({"alerts": alerts})

    async def write(request: web.Request) -> web.Response:
        raise AssertionError("a tag of unknown type was written")

    app = web.Application()
    app.router.add_post("/api/auth/login", login)
    app.router.add_get("/api/dp/browse", browse)
    app.router.add_post("/api/dp/read", read)
    app.router.add_put("/api/dp/{name}", write)
    app.router.add_get("/api/alerts/active", active)
    return app


def classic_app() -> web.Application:
    """The same, as the classic WinCC REST service would send it: ``dataType`` as names
    instead of codes, a message that went at the .NET minimum date, one in the year 10000."""
    variables = [{"name": f"Plant.{name}", "dataType": kind} for name, kind in TYPES]
    variables.append({"name": "Plant.Unit", "dataType": "Struct"})
    messages = [
        {"messageNumber": "ok", "state": 2, "timestamp": "0001-01-01T00:00:00Z", "text1": "t"},
        {"messageNumber": "bad", "state": 1, "timestamp": "9999-12-31T23:59:59-14:00"},
    ]
    base = CLASSIC_PATH

    async def listing(request: web.Request) -> web.Response:
        return web.json_response(variables)

    async def read(request: web.Request) -> web.Response:
        names = (await request.json())["variableNames"]
        return web.Response(body="[" + json_items(names, "variableName", "qualityCode") + "]")

    async def active(request: web.Request) -> web.Response:
        return web.json_response(messages)

    async def write(request: web.Request) -> web.Response:
        raise AssertionError("a tag of unknown type was written")

    app = web.Application()
    app.router.add_get(f"{base}/tagManagement/variables", listing)
    app.router.add_post(f"{base}/tagManagement/Values", read)
    app.router.add_put(f"{base}/tagManagement/Value/{{name}}", write)
    app.router.add_get(f"{base}/alarmLogging/MessageList/F", active)
    return app


@pytest.mark.parametrize("dialect", ["rest", "classic"])
async def test_a_hostile_server_never_stops_the_gateway(
    dialect: str, mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The good tags are published, the unknown-typed one as it comes (and never written),
    the bad ones are read errors logged once; so are the alarms; and the gateway keeps
    polling."""
    runner = web.AppRunner(rest_app() if dialect == "rest" else classic_app())
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    url = f"http://127.0.0.1:{port}"
    config: dict[str, Any] = {
        "wincc": {"url": url, "allow_insecure_http": True, "username": "u", "password": "p"},
        "poll": [{"name": "fast", "interval": "100ms", "tags": ["Plant.**"]}],
        "alarms": {"interval": "100ms"},
        "mqtt": {"url": mosquitto.url, "topic_prefix": PREFIX, "client_id": "gw-hostile"},
        "buffer": {"path": str(tmp_path / "buffer.db")},
        "health": {"enabled": False},
        "commands": {"writable": ["Plant.**"]},
    }
    never = "acked_at"
    if dialect == "classic":
        config["wincc"].update(dialect="classic", url=url + CLASSIC_PATH, alarm_filter="F")
        never = "went_at"
    caplog.set_level(logging.WARNING)
    tags = f"{PREFIX}/tags/Plant/"
    result = f"{PREFIX}/cmd/result"
    try:
        async with (
            subscribe(mosquitto, f"{PREFIX}/tags/#", f"{PREFIX}/alarms/#", result) as sub,
            running_gateway(config) as gateway,
            aiomqtt.Client("127.0.0.1", mosquitto.port) as commander,
        ):
            wanted = [f"{tags}{name}" for name in ("Good", "Old", "Odd", "Unit/On")]
            wanted.append(f"{PREFIX}/alarms/ok")
            await sub.wait_for(lambda msgs: set(wanted) <= {m.topic for m in msgs})
            await commander.publish(f"{PREFIX}/cmd/write/Plant/Odd", b'{"value": {"re": 2}}', qos=1)
            await sub.wait_for(lambda msgs: any(m.topic == result for m in msgs))
            (poller,) = gateway.pollers
            polls = poller.stats.polls
            alarm_poller = gateway.alarm_poller
            assert alarm_poller is not None
            await wait_until(lambda: poller.stats.polls >= polls + 3)
            await wait_until(lambda: alarm_poller.stats.polls >= 3)
            assert poller.stats.read_errors >= 2 * poller.stats.polls - 2
            assert alarm_poller.stats.read_errors >= 3
        by_topic = {m.topic: m.json() for m in sub.messages if m.payload}
        assert "unknown to the gateway" in by_topic[result]["error"]
        assert by_topic[f"{tags}Good"]["value"] == 1.5
        assert by_topic[f"{tags}Old"]["ts"] == "0001-01-01T00:00:00.000Z"
        assert by_topic[f"{tags}Odd"]["value"] == {"re": 1, "im": [2, 3]}
        assert by_topic[f"{tags}Unit/On"]["value"] is True
        assert f"{tags}Late" not in by_topic
        assert f"{tags}Deep" not in by_topic
        assert by_topic[f"{PREFIX}/alarms/ok"][never] is None
        assert f"{PREFIX}/alarms/bad" not in by_topic
        for message in sub.messages:
            for key in ("ts", "came_at", "went_at", "acked_at"):
                stamp = message.json().get(key) if message.payload else None
                if stamp is not None:
                    assert datetime.fromisoformat(stamp).year >= 1
                    assert len(stamp) == len("0001-01-01T00:00:00.000Z"), stamp
        unread = [r.getMessage() for r in caplog.records if "cannot read" in r.getMessage()]
        assert len([line for line in unread if "Plant.Late" in line]) == 1, unread
        assert len([line for line in unread if "Plant.Deep" in line]) == 1, unread
        assert len([line for line in unread if "alarm bad" in line]) == 1, unread
    finally:
        await runner.cleanup()


async def wait_until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds. The pollers'
    counters have no event to await, so they are looked at every 20 ms."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.02)
