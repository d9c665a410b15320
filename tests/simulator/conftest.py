"""A running simulator on a free port, a client session and a logged-in header."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from gateway.simulator import Simulator, SimulatorOptions


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    """A frozen plant (change_rate 0): tests change it directly."""
    options = SimulatorOptions(port=0, tags=300, alarms=8, change_rate=0.0, seed=3, tick=0.01)
    async with Simulator(options) as simulator:
        yield simulator


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
async def auth(sim: Simulator, session: aiohttp.ClientSession) -> dict[str, str]:
    async with session.post(
        f"{sim.url}/api/auth/login", json={"username": "demo", "password": "demo"}
    ) as response:
        assert response.status == 200
        token = (await response.json())["token"]
    return {"Authorization": f"Bearer {token}"}
