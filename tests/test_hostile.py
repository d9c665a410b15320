"""Nothing WinCC sends, and nothing a previous run left on disk, stops the gateway.

The gateway runs in-process against a real mosquitto; state left in the buffer file is
damaged by hand before it starts.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import orjson
import pytest

from gateway.buffer import _SCHEMA
from gateway.simulator.server import Simulator
from tests.conftest import Mosquitto, TlsFiles, subscribe
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
        db.executemany(
            "INSERT INTO alarm_state (id, body) VALUES (?, ?)",
            [("gone-1", orjson.dumps(OLD_ALARM)), ("gone-2", b"\xff\xfe"), ("gone-3", "text")],
        )


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
        subscribe(mosquitto, f"{PREFIX}/alarms/+", f"{PREFIX}/tags/#") as sub,
        running_gateway(config),
    ):
        # The alarms whose states could not be read are cleared, not left retained.
        await sub.wait_for(
            lambda msgs: all(
                any(m.topic == f"{PREFIX}/alarms/{i}" and m.payload == b"" for m in msgs)
                for i in ("gone-1", "gone-2", "gone-3")
            )
        )
        level = f"{PREFIX}/tags/{TAG.replace('.', '/')}"
        await sub.wait_for(lambda msgs: any(m.topic == level for m in msgs))
    text = caplog.text
    assert "dropped stored tag state that cannot be read" in text
    assert f"'{TAG}' (its seq and last value)" in text
    assert "'System1.Area1.Tank1.Temperature' (its last value)" in text
    assert "'System1.Area1.Tank1.Pressure' (its last value)" in text
    assert "Tank2.Level" not in text
    for alarm_id in ("gone-1", "gone-2", "gone-3"):
        assert f"stored state of alarm '{alarm_id}'" in text
    with sqlite3.connect(tmp_path / "buffer.db") as db:
        seqs = dict(db.execute("SELECT name, seq FROM tag_state"))
    assert seqs["System1.Area1.Tank1.Temperature"] >= 41  # the seq of a tag went on
    assert isinstance(seqs[TAG], int)
