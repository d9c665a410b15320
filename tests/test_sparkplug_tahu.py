"""What the gateway publishes in Sparkplug B, decoded by Eclipse Tahu's JavaScript
``sparkplug-payload`` (run with node, tests/tahu/decode.js): a second decoder we did not
write, beside pysparkplug. CI installs node and the package (.ci/run); elsewhere the test
is skipped, with the reason, when they are missing."""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest
from pysparkplug import DBirth

from gateway.core.timestamps import now_ms
from gateway.core.topics import tag_path
from gateway.simulator.server import Simulator
from tests.conftest import Mosquitto, TlsFiles, subscribe
from tests.gateway_harness import running_gateway
from tests.test_sparkplug import ALL, SEQUENCED, SETPOINT, kind, of, sparkplug, until

pytestmark = pytest.mark.slow

TAHU = Path(__file__).parent / "tahu"


def tahu_node() -> str:
    """The node binary, with Tahu's package installed next to the decoding script."""
    node = shutil.which("node")
    installed = (TAHU / "node_modules" / "sparkplug-payload").is_dir()
    if node is not None and installed:
        return node
    reason = (
        "node is not installed"
        if node is None
        else "sparkplug-payload is not installed: run `npm ci --prefix tests/tahu`"
    )
    if os.environ.get("WINCC_GATEWAY_CI"):
        pytest.fail(f"the Tahu decoder is required in CI: {reason}")
    pytest.skip(f"the Tahu decoder cannot run: {reason}")


async def tahu_decode(payloads: list[tuple[bytes, dict[str, int] | None]]) -> list[Any]:
    """Each payload as Tahu decodes it; data with the datatypes its birth declared by alias."""
    lines = b"".join(
        orjson.dumps({"payload": base64.b64encode(payload).decode(), "datatypes": types}) + b"\n"
        for payload, types in payloads
    )
    process = await asyncio.create_subprocess_exec(
        tahu_node(),
        str(TAHU / "decode.js"),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(lines), timeout=60)
    assert process.returncode == 0, err.decode()
    return [orjson.loads(line) for line in out.splitlines()]


TYPE_NAMES = {10: "Double", 4: "Int64", 11: "Boolean", 12: "String"}


def number(metric: dict[str, Any]) -> Any:
    """The metric's value; Tahu's 64-bit integers come as decimal strings (JSON has none)."""
    value = metric["value"]
    return int(value) if metric["type"] == "Int64" and value is not None else value


async def test_tahu_decodes_births_data_and_death_as_the_gateway_meant_them(
    simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    tahu_node()  # skip (or fail in CI) before starting anything
    poll = [{"name": "fast", "interval": "100ms", "tags": ["System1.Area1.Tank1.*"]}]
    config = sparkplug(simulator, mosquitto, tls, tmp_path, poll=poll)
    async with subscribe(mosquitto, ALL) as sub:
        async with running_gateway(config) as gateway:
            await sub.wait_for(lambda ms: bool(of("DDATA", ms)))
            simulator.plant.force(SETPOINT, 7.5, now_ms=now_ms(), quality=0x08)
            await until(lambda: gateway.decider.current(SETPOINT) == (7.5, 0x08, False))
            await gateway.buffer.settle()
            await until(lambda: len(gateway.buffer) == 0)
            tags = list(gateway.pollers[0].tags)
        await sub.wait_for(lambda ms: kind(ms[-1]) == "NDEATH")  # the clean stop

    nbirth, dbirth = of("NBIRTH", sub.messages)[-1], of("DBIRTH", sub.messages)[-1]
    birth = DBirth.decode(dbirth.payload)  # pysparkplug's reading, to compare against
    datatypes = {str(m.alias): int(m.datatype) for m in birth.metrics}
    sequenced = [m for m in sub.messages if kind(m) in SEQUENCED]
    death = sub.messages[-1]
    requests: list[tuple[bytes, dict[str, int] | None]] = [(nbirth.payload, None)]
    requests += [(m.payload, datatypes if kind(m) == "DDATA" else None) for m in sequenced]
    requests.append((death.payload, None))
    node, *decoded, ndeath = await tahu_decode(requests)

    node_metrics = {m["name"]: m for m in node["metrics"]}
    assert node["seq"] == "0"
    bd_seq = node_metrics["bdSeq"]
    assert bd_seq["type"] == "Int64"
    assert (
        node_metrics["Node Control/Rebirth"]["type"],
        node_metrics["Node Control/Rebirth"]["value"],
    ) == ("Boolean", False)
    assert node_metrics["Gateway/WinCC"]["type"] == "String"
    assert node_metrics["Gateway/Buffer Depth"]["type"] == "UInt64"
    assert [m["name"] for m in ndeath["metrics"]] == ["bdSeq"]
    assert ndeath["metrics"][0]["value"] == bd_seq["value"]  # the will matches the birth
    assert "seq" not in ndeath

    # seq: consecutive from the NBIRTH, as Tahu reads it.
    seqs = [int(payload["seq"]) for payload in decoded]
    start = sequenced.index(nbirth)
    assert seqs[start] == 0
    assert seqs[start:] == [n % 256 for n in range(len(seqs) - start)]

    # DBIRTH: every tag by name, with alias, datatype and the value pysparkplug reads too.
    device = decoded[sequenced.index(dbirth)]
    assert {m["name"] for m in device["metrics"]} == {tag_path(t) for t in tags}
    expected = {m.name: (str(m.alias), TYPE_NAMES[int(m.datatype)], m.value) for m in birth.metrics}
    for metric in device["metrics"]:
        alias, datatype, value = expected[metric["name"]]
        assert (metric["alias"], metric["type"]) == (alias, datatype)
        assert number(metric) == value
        assert int(metric["timestamp"]) > 0

    # DDATA: aliases only, every metric timestamped, typed by the birth; the bad sample
    # carries its Quality properties.
    by_alias = {alias: name for name, (alias, _, _) in expected.items()}
    setpoints = []
    for message, payload in zip(sequenced, decoded, strict=True):
        if kind(message) != "DDATA":
            continue
        for metric in payload["metrics"]:
            assert "name" not in metric and int(metric["timestamp"]) > 0
            assert metric["type"] == expected[by_alias[metric["alias"]]][1]
            if by_alias[metric["alias"]] == tag_path(SETPOINT):
                setpoints.append((metric["value"], metric.get("properties")))
    assert (
        7.5,
        {"Quality": {"value": 0, "type": "Int32"}, "WinCC Quality": {"value": 8, "type": "Int32"}},
    ) in setpoints
