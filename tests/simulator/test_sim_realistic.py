"""The simulator's ``--realistic`` layout over HTTP: floats only, null-typed folders, a
six-level tree, and a fresh timestamp on every change."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import aiohttp

from gateway.simulator import Simulator, SimulatorOptions
from gateway.simulator.cli import _options, configure_parser
from gateway.simulator.plant import alarm_capacity
from gateway.simulator.realistic import realistic_layout

LOGIN = {"username": "demo", "password": "demo"}


async def _walk(
    http: aiohttp.ClientSession, headers: dict[str, str], path: str, folders: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Every leaf under ``path``; every folder met is appended to ``folders``."""
    async with http.get("/api/dp/browse", params={"path": path}, headers=headers) as response:
        children = (await response.json())["children"]
    leaves: list[dict[str, Any]] = []
    for child in children:
        if child["has_children"]:
            folders.append(child)
            leaves += await _walk(http, headers, child["name"], folders)
        else:
            leaves.append(child)
    return leaves


async def test_realistic_serves_floats_only_under_null_typed_folders_six_levels_deep() -> None:
    options = SimulatorOptions(port=0, tags=600, change_rate=5.0, tick=0.01, seed=1, realistic=True)
    async with Simulator(options) as sim, aiohttp.ClientSession(sim.url) as http:
        async with http.post("/api/auth/login", json=LOGIN) as response:
            headers = {"Authorization": f"Bearer {(await response.json())['token']}"}
        folders: list[dict[str, Any]] = []
        leaves = await _walk(http, headers, "", folders)
        assert [leaf["name"] for leaf in leaves] == sim.plant.names
        assert len(leaves) == 600
        assert folders and all(folder["type"] is None for folder in folders)
        assert {leaf["type"] for leaf in leaves} == {"float"}
        assert {len(leaf["name"].split(".")) for leaf in leaves} == {6}
        assert leaves[0]["name"] == "System1.Site1.Line1.Cell1.Tank1.Level"
        assert any(name.startswith("System1.Site1.Line2.Cell1.") for name in sim.plant.names)
        names = {"names": sim.plant.names}
        async with http.post("/api/dp/read", json=names, headers=headers) as response:
            first = (await response.json())["values"]
        assert all(type(item["value"]) is float for item in first)
        assert {item["type"] for item in first} == {"float"}
        changed = sim.plant.changes
        async with asyncio.timeout(10):
            while sim.plant.changes < changed + 600:  # the plant steps on its own timer
                async with http.get("/_sim/stats") as response:
                    await response.read()
        async with http.post("/api/dp/read", json=names, headers=headers) as response:
            second = (await response.json())["values"]
    moved = [
        (old, new)
        for old, new in zip(first, second, strict=True)
        if (old["value"], old["quality"]) != (new["value"], new["quality"])
    ]
    assert moved
    assert all(new["timestamp"] > old["timestamp"] for old, new in moved)
    assert all(type(new["value"]) is float for _, new in moved)


def test_realistic_keeps_the_demo_signals_so_the_alarms_fit_the_same_tags() -> None:
    names, signals, _ = realistic_layout(1300)
    assert sum(len(signal.alarms) for signal in signals) == alarm_capacity(1300)
    assert len(set(names)) == 1300


def test_the_realistic_flag_reaches_the_options() -> None:
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    options = _options(parser.parse_args(["--realistic"]))
    assert isinstance(options, SimulatorOptions)
    assert options.realistic
    default = _options(parser.parse_args([]))
    assert isinstance(default, SimulatorOptions)
    assert not default.realistic
