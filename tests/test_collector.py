"""The garbage collector's freezes and sweeps, on this process's real collector."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest

from gateway import collector


class Node:
    """Something the collector tracks, able to hold a reference to itself."""

    def __init__(self) -> None:
        self.other: Node | None = None


def garbage_cycle() -> Node:
    """Two nodes that refer to each other: garbage only the cyclic collector frees."""
    first, second = Node(), Node()
    first.other, second.other = second, first
    return first


@pytest.fixture(autouse=True)
def restored_collector() -> Iterator[None]:
    """The test process's collector as it was: thresholds back, nothing left frozen."""
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_tune_freezes_what_is_loaded_and_spaces_young_collections() -> None:
    gc.unfreeze()
    collector.tune()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold()[0] == collector.COLLECT_AFTER


def test_a_frozen_cycle_survives_collections_until_the_sweep() -> None:
    cycle = weakref.ref(garbage_cycle())
    gc.freeze()
    gc.collect()
    assert cycle() is not None, "a frozen cycle is out of the collector's reach"
    assert collector.sweep() >= 2
    assert cycle() is None
    assert gc.get_freeze_count() > 0, "what survived the sweep is frozen again"


async def test_the_running_freezer_freezes_survivors_then_sweeps_their_garbage(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(collector, "FREEZE_EVERY", 0.01)
    monkeypatch.setattr(collector, "SWEEP_EVERY", 0.2)
    gc.unfreeze()
    frozen, freed = asyncio.Event(), asyncio.Event()
    freeze = gc.freeze

    def freeze_and_tell() -> None:
        freeze()
        frozen.set()

    monkeypatch.setattr(gc, "freeze", freeze_and_tell)
    cycle = garbage_cycle()
    weakref.finalize(cycle, freed.set)
    freezer = asyncio.create_task(collector.keep_frozen())
    try:
        await asyncio.wait_for(frozen.wait(), timeout=5)
        assert gc.get_freeze_count() > 0
        del cycle
        gc.collect()
        assert not freed.is_set(), "the cycle was frozen before it became garbage"
        await asyncio.wait_for(freed.wait(), timeout=5)
    finally:
        freezer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await freezer
