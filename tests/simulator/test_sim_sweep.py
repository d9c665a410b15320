"""The sweeping plant of throughput benchmarks: every drifting tag in turn, counter values,
and what a reader sees (types, timestamps, history, quality) as with the random plant."""

from __future__ import annotations

import argparse
import itertools

import aiohttp
import orjson
import pytest

from gateway.core.models import TagType
from gateway.simulator import Simulator, SimulatorOptions
from gateway.simulator.cli import _options, configure_parser
from gateway.simulator.plant import GOOD, NOT_GOOD_CODES, Plant
from gateway.simulator.sweep import SweepPlant

T0 = 1_790_000_000_000

STATUS = "System1.Area1.Meter1.Status"
RUNNING = "System1.Area1.Pump1.Running"
CURRENT = "System1.Area1.Pump1.Current"
STARTS = "System1.Area1.Pump1.Starts"
SETPOINT = "System1.Area1.Tank1.Setpoint"
LOGIN = {"username": "demo", "password": "demo"}


def run(plant: Plant, seconds: float, *, change_rate: float, bad_quality: float = 0.0) -> int:
    """Step the plant in 100 ms ticks from T0, as the simulator's ticker does."""
    made = 0
    for tick in range(1, round(seconds * 10) + 1):
        made += plant.step(T0 + tick * 100, change_rate=change_rate, bad_quality=bad_quality)
    return made


def changed_since(plant: Plant, ts_ms: int) -> set[str]:
    return {name for name in plant.names if plant.reading(name).ts_ms > ts_ms}


def test_at_one_change_per_tag_and_second_every_drifting_tag_changes_each_second() -> None:
    plant = SweepPlant(3000, 20, now_ms=T0, seed=1)
    drifting = {name for name in plant.names if not name.endswith(("Setpoint", "Mode"))}
    made = run(plant, 1.0, change_rate=1.0)
    assert made == plant.changes == plant.changes_good
    assert 2900 <= made <= 3100  # the rate asked for, as the random plant makes it
    for second in range(1, 4):  # and again in each following second
        assert changed_since(plant, T0 + (second - 1) * 1000) == drifting
        for tick in range(1, 11):
            plant.step(T0 + second * 1000 + tick * 100, change_rate=1.0)
    random = Plant(3000, 20, now_ms=T0, seed=1)
    run(random, 1.0, change_rate=1.0)
    assert len(changed_since(random, T0)) < 0.8 * len(drifting)  # draws repeat tags


def test_values_keep_their_type_count_up_toggle_and_cycle() -> None:
    plant = SweepPlant(200, 0, now_ms=T0, seed=1)  # 170 drifting tags, 200 changes a second
    before = {name: plant.reading(name).value for name in (RUNNING, STATUS, SETPOINT)}
    run(plant, 0.5, change_rate=1.0)  # the first 100 of the sweep, each once
    current, starts = plant.reading(CURRENT).value, plant.reading(STARTS).value
    assert type(current) is float
    assert type(starts) is int
    assert plant.reading(RUNNING).value is (not before[RUNNING])
    assert before[STATUS] == "ok"
    assert plant.reading(STATUS).value == "maintenance"
    for tick in range(6, 11):  # the other 70, then round again to the first 30
        plant.step(T0 + tick * 100, change_rate=1.0)
    assert plant.reading(CURRENT).value > current
    assert plant.reading(STARTS).value > starts
    assert plant.reading(SETPOINT).value == before[SETPOINT]  # written only, never drifts


def test_every_change_is_in_the_history_with_its_timestamp() -> None:
    plant = SweepPlant(200, 4, now_ms=T0, seed=1)
    run(plant, 3.0, change_rate=1.0)
    page, _ = plant.history(CURRENT, start_ms=0, end_ms=T0 * 2, limit=100)
    assert len(page) == plant.history_length(CURRENT) >= 3
    assert [reading.ts_ms for reading in page] == sorted({reading.ts_ms for reading in page})
    assert page[-1] == plant.reading(CURRENT)
    assert all(reading.quality == GOOD for reading in page)
    assert plant.tag_type(CURRENT) is TagType.FLOAT


def test_bad_quality_share_and_a_bad_code_keeps_the_old_value() -> None:
    plant = SweepPlant(2000, 0, now_ms=T0, seed=9)
    made = run(plant, 5.0, change_rate=1.0, bad_quality=0.3)
    assert 0.25 < 1 - plant.changes_good / made < 0.35
    codes = {plant.reading(name).quality for name in plant.names}
    assert codes - {GOOD} <= set(NOT_GOOD_CODES)
    page, _ = plant.history(CURRENT, start_ms=0, end_ms=T0 * 2, limit=100)
    for before, after in itertools.pairwise(page):
        if after.quality < 0x40:
            assert after.value == before.value


def test_listeners_hear_every_change() -> None:
    plant = SweepPlant(300, 0, now_ms=T0, seed=1)
    heard: list[int] = []
    plant.on_change = lambda i, value, quality, ts_ms: heard.append(i)
    made = run(plant, 1.0, change_rate=1.0)
    assert len(heard) == made


@pytest.mark.parametrize("kind", [Plant, SweepPlant])
def test_an_item_is_kept_encoded_until_its_tag_changes(kind: type[Plant]) -> None:
    plant = kind(600, 20, now_ms=T0, seed=3)
    run(plant, 2.0, change_rate=1.0, bad_quality=0.2)
    plant.force(RUNNING, True, now_ms=T0 + 2000)
    plant.force(STATUS, "fault", now_ms=T0 + 2000, quality=0x48)
    encoded = [plant.item_json(i) for i in range(len(plant))]
    assert encoded == [orjson.dumps(plant.item(i)) for i in range(len(plant))]
    assert all(plant.item_json(i) is encoded[i] for i in range(len(plant)))  # kept
    i = plant.index[CURRENT]
    plant.force(CURRENT, 7.5, now_ms=T0 + 2100)
    assert plant.item_json(i) is not encoded[i]
    assert orjson.loads(plant.item_json(i))["value"] == 7.5
    assert plant.item_json(i) == orjson.dumps(plant.item(i))


async def test_a_sweep_simulator_answers_the_same_read_again_with_the_current_items() -> None:
    parser = argparse.ArgumentParser(prog="wincc-gateway simulate")
    configure_parser(parser)
    argv = ["--sweep", "--port", "0", "--tags", "300", "--change-rate", "0", "--seed", "3"]
    options = _options(parser.parse_args(argv))
    assert isinstance(options, SimulatorOptions)
    async with Simulator(options) as sim, aiohttp.ClientSession() as session:
        assert isinstance(sim.plant, SweepPlant)
        async with session.post(f"{sim.url}/api/auth/login", json=LOGIN) as response:
            token = (await response.json())["token"]
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        body = orjson.dumps({"names": sim.plant.names})

        async def read() -> bytes:
            async with session.post(f"{sim.url}/api/dp/read", data=body, headers=headers) as r:
                assert r.status == 200
                assert r.content_type == "application/json"
                return await r.read()

        def expected() -> bytes:  # what the API answered before items were kept encoded
            return orjson.dumps({"values": [sim.plant.item(i) for i in range(len(sim.plant))]})

        first = await read()
        assert first == expected()
        sim.plant.step(sim.now() + 2000, change_rate=1.0)  # round every drifting tag
        second = await read()  # the same names: answered from the tag numbers kept
        assert second == expected()
        changed = [
            a != b
            for a, b in zip(
                orjson.loads(first)["values"], orjson.loads(second)["values"], strict=True
            )
        ]
        assert sum(changed) >= 0.8 * len(sim.plant)
        assert (sim.reads, sim.read_items) == (2, 600)
