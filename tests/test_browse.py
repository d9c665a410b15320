"""`wincc-gateway browse` against the simulator over HTTPS."""

from __future__ import annotations

import tomllib

from gateway.browse import browse_snippet
from gateway.simulator.server import Simulator
from gateway.wincc.settings import RestSettings
from tests.conftest import TlsFiles


def wincc(simulator: Simulator, tls: TlsFiles) -> RestSettings:
    return RestSettings(url=simulator.url, username="demo", password="demo", ca_file=tls.ca_file)  # type: ignore[arg-type]


async def test_browse_prints_a_snippet_that_pastes_into_a_poll_group(
    simulator: Simulator, tls: TlsFiles
) -> None:
    snippet = await browse_snippet(wincc(simulator, tls), "System1.Area1.Tank1")
    parsed = tomllib.loads(snippet)
    assert parsed["tags"] == [
        "System1.Area1.Tank1.Level",
        "System1.Area1.Tank1.Setpoint",
        "System1.Area1.Tank1.Temperature",
    ]
    assert snippet.startswith("# 3 tags under System1.Area1.Tank1\n")
    assert '    "System1.Area1.Tank1.Setpoint",     # float, writable\n' in snippet
    assert '    "System1.Area1.Tank1.Temperature",  # float, read-only\n' in snippet


async def test_browse_without_a_path_lists_every_tag(simulator: Simulator, tls: TlsFiles) -> None:
    parsed = tomllib.loads(await browse_snippet(wincc(simulator, tls), ""))
    assert parsed["tags"] == sorted(simulator.plant.names)


async def test_browse_of_an_unknown_path_says_so(simulator: Simulator, tls: TlsFiles) -> None:
    assert await browse_snippet(wincc(simulator, tls), "System9") == "# no tags under System9\n"
