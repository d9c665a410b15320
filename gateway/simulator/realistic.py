"""The ``--realistic`` plant layout: how a real WinCC project differs from the demo one.

A real server answers with floats for nearly every tag (analog values, and bools or
counters scaled into floats by the project), types its folders ``null`` when browsed, and
nests its tags deeper (site, line, cell, device). The gateway and the bench must hold up
on that as well as on the tidy demo tree. The signal sequence stays the demo plant's, so
the same ``--tags`` carry the same alarms and change at the same rates.
"""

from __future__ import annotations

import dataclasses

from gateway.core.models import TagType
from gateway.simulator.plant import ROOT, Layout, Signal, tag_layout

AREAS_PER_CELL_GROUP = 4
"""Cells per line and lines per site: each demo area becomes one cell."""


def _cell(area: int) -> str:
    """``System1.Site<s>.Line<l>.Cell<c>`` of the 1-based demo area number."""
    per = AREAS_PER_CELL_GROUP
    index = area - 1
    site, line, cell = index // (per * per) + 1, index // per % per + 1, index % per + 1
    return f"{ROOT}.Site{site}.Line{line}.Cell{cell}"


def _as_float(signal: Signal, cache: dict[str, Signal]) -> Signal:
    """The signal as a float tag (its range, drift and alarm limits unchanged)."""
    key = signal.name
    if key not in cache:
        cache[key] = dataclasses.replace(signal, type=TagType.FLOAT, choices=())
    return cache[key]


def realistic_layout(count: int) -> Layout:
    """The demo plant's first ``count`` tags, every one a float, in a six-level tree.

    ``System1.Area7.Pump3.Speed`` becomes ``System1.Site1.Line2.Cell3.Pump3.Speed``.
    """
    demo_names, demo_signals, _ = tag_layout(count)
    cache: dict[str, Signal] = {}
    names: list[str] = []
    folders: dict[str, dict[str, None]] = {"": {}}
    for name in demo_names:
        _, area, rest = name.split(".", 2)
        full = f"{_cell(int(area.removeprefix('Area')))}.{rest}"
        names.append(full)
        parent = ""
        levels = full.split(".")
        for depth in range(1, len(levels) + 1):
            node = ".".join(levels[:depth])
            folders[parent][node] = None
            if depth < len(levels):
                folders.setdefault(node, {})
            parent = node
    signals = [_as_float(signal, cache) for signal in demo_signals]
    return names, signals, {folder: list(children) for folder, children in folders.items()}
