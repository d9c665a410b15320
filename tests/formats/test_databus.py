"""The Industrial Edge Databus format's pure parts: metadata, values by id, qualities,
64-bit integers as strings, status as birth and will, and the config. End to end over a
broker: tests/test_databus.py."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from gateway.config import GatewaySettings
from gateway.core.models import Reading, TagType
from gateway.errors import ConfigError
from gateway.formats import build_format
from gateway.formats.base import FormatContext, Status
from gateway.formats.databus import DatabusConnector, quality_code
from gateway.formats.sparkplug_state import SparkplugState

TYPES = {
    "S.A.Level": TagType.FLOAT,
    "S.A.Count": TagType.INT,
    "S.A.Run": TagType.BOOL,
    "S.A.Mode": TagType.STRING,
    "S.A.Blob": TagType.UNKNOWN,
}


def connector(tmp_path: Path) -> DatabusConnector:
    return DatabusConnector(
        app_instance="wincc1",
        connection="scada-1",
        state=SparkplugState(tmp_path / "ids.json"),
        tag_types=TYPES,
        prefix="p",
    )


def test_metadata_declares_every_datapoint_before_values_which_go_by_id(tmp_path: Path) -> None:
    fmt = connector(tmp_path)
    (meta,) = fmt.catalog(
        {"fast": ["S.A.Level", "S.A.Count", "S.A.Run"], "slow": ["S.A.Mode", "S.A.Blob"]}
    )
    assert (meta.topic, meta.qos, meta.retain) == ("ie/m/j/simatic/v1/wincc1/dp", 1, True)
    body = orjson.loads(meta.payload)
    (connection,) = body["connections"]
    assert connection["name"] == "scada-1"
    collections = {c["name"]: c for c in connection["dataPoints"]}
    assert collections["fast"]["topic"] == "ie/d/j/simatic/v1/wincc1/dp/r/scada-1/fast"
    points = {p["name"]: p for c in collections.values() for p in c["dataPointDefinitions"]}
    assert {name: p["dataType"] for name, p in points.items()} == {
        "S.A.Level": "LReal",
        "S.A.Count": "LInt",
        "S.A.Run": "Bool",
        "S.A.Mode": "String",
        "S.A.Blob": "String",
    }
    ids = {name: p["id"] for name, p in points.items()}
    assert len(set(ids.values())) == 5 and all(isinstance(i, str) for i in ids.values())
    assert (
        fmt.catalog(
            {"fast": ["S.A.Level", "S.A.Count", "S.A.Run"], "slow": ["S.A.Mode", "S.A.Blob"]}
        )
        == []
    )
    assert connector(tmp_path).catalog({"fast": ["S.A.Level"]})  # changed: metadata again
    again = orjson.loads(connector(tmp_path).on_connect(Status("online", 0, "up"))[1].payload)
    kept = again["connections"][0]["dataPoints"][0]["dataPointDefinitions"]
    assert kept == [{"name": "S.A.Level", "id": ids["S.A.Level"], "dataType": "LReal"}]  # stable

    fmt = connector(tmp_path)
    fmt.catalog({"fast": ["S.A.Level", "S.A.Count", "S.A.Run"]})
    samples = [
        (Reading("S.A.Level", 1.5, 0x80, 1_700_000_000_000), 1, True),
        (Reading("S.A.Count", 2**62 + 1, 0x48, 1_700_000_000_001), 1, False),
        (Reading("S.A.Run", True, 0x08, 1_700_000_000_002), 1, False),
        (Reading("S.A.Unknown", 1, 0x80, 1), 1, True),  # not in the metadata: left out
    ]
    (message,) = fmt.samples("fast", samples, backfill=False)
    assert message.topic == "ie/d/j/simatic/v1/wincc1/dp/r/scada-1/fast"
    body = orjson.loads(message.payload)
    assert body["seq"] == 1
    assert body["vals"] == [
        {"id": ids["S.A.Level"], "val": 1.5, "ts": "2023-11-14T22:13:20.000Z", "qc": 3, "qx": 128},
        {
            "id": ids["S.A.Count"],
            "val": str(2**62 + 1),
            "ts": "2023-11-14T22:13:20.001Z",
            "qc": 1,
            "qx": 72,
        },
        {"id": ids["S.A.Run"], "val": True, "ts": "2023-11-14T22:13:20.002Z", "qc": 0, "qx": 8},
    ]
    assert orjson.loads(fmt.samples("fast", samples, backfill=False)[0].payload)["seq"] == 2


def test_status_is_available_as_birth_and_unavailable_as_will(tmp_path: Path) -> None:
    fmt = connector(tmp_path)
    will = fmt.will(0)
    assert (will.topic, will.qos, will.retain) == ("ie/s/j/simatic/v1/wincc1/status", 1, True)
    assert orjson.loads(will.payload)["connector"] == {"status": "unavailable"}
    status, meta = fmt.on_connect(Status("online", 0, "up"))
    assert orjson.loads(status.payload)["connector"] == {"status": "available"}
    assert orjson.loads(status.payload)["connections"] == [{"name": "scada-1", "status": "good"}]
    assert meta.topic == "ie/m/j/simatic/v1/wincc1/dp"
    (down,) = fmt.on_source(Status("online", 0, "down"))
    assert orjson.loads(down.payload)["connections"] == [{"name": "scada-1", "status": "bad"}]
    assert (
        orjson.loads(fmt.on_leave(Status("offline", 0)).payload)["connector"]["status"]
        == "unavailable"
    )
    assert [quality_code(c) for c in (0x00, 0x48, 0x80, 0xC0)] == [0, 1, 3, 3]


def test_the_table_builds_databus_from_the_config(tmp_path: Path) -> None:
    settings = GatewaySettings(
        mqtt={"payload": "databus"},
        databus={"app_instance": "wincc1"},
        buffer={"path": str(tmp_path / "buffer.db")},
        wincc={"url": "https://scada-1.example:8443"},
    )
    fmt = build_format(FormatContext(settings))
    assert isinstance(fmt, DatabusConnector)
    assert fmt.will(0).topic == "ie/s/j/simatic/v1/wincc1/status"
    with pytest.raises((ConfigError, ValueError), match="app_instance"):
        GatewaySettings(mqtt={"payload": "databus"})
    with pytest.raises((ConfigError, ValueError)):
        GatewaySettings(mqtt={"payload": "databus"}, databus={"app_instance": "a/b"})
