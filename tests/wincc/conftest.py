"""The WinCC client against the real simulator over HTTPS, with a private trustme CA.

``Recorder`` watches the client's own HTTP exchanges through an aiohttp ``TraceConfig``,
so tests count logins, chunks and requests in flight without reaching into either side.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
import trustme
from pydantic import SecretStr

from gateway.simulator.server import Simulator, SimulatorOptions
from gateway.wincc.base import WinCCClient
from gateway.wincc.connect import build_ssl_context, open_client
from gateway.wincc.rest import RestClient
from gateway.wincc.settings import RestSettings

USERNAME = "gateway"
PASSWORD = "Tr0ub4dor-3-secret"  # distinctive, so tests can search texts for it
TAGS = 300  # Area1 and Area2 complete (130 tags each), Area3 in part
ALARMS = 6


@dataclass
class Exchange:
    """One request the client sent and the status it got (None while in flight)."""

    method: str
    path: str
    query: dict[str, str]
    token: str | None
    status: int | None = None


@dataclass
class Recorder:
    """Every exchange of one client session, the peak in flight, and a response hook."""

    exchanges: list[Exchange] = field(default_factory=list)
    in_flight: int = 0
    peak: int = 0
    on_response: Callable[[Exchange], None] | None = None
    sent: asyncio.Event = field(default_factory=asyncio.Event)  # set by the first request

    def paths(self, method: str, path: str) -> list[Exchange]:
        """The exchanges of one method and path (query left out)."""
        return [e for e in self.exchanges if e.method == method and e.path == path]

    @property
    def logins(self) -> int:
        """How many times the client logged in (or tried to)."""
        return len(self.paths("POST", "/api/auth/login"))

    def tokens(self) -> set[str]:
        """Every bearer token the client sent."""
        return {e.token for e in self.exchanges if e.token}

    def trace_config(self) -> aiohttp.TraceConfig:
        """Hooks for ``aiohttp.ClientSession(trace_configs=[...])``."""
        config = aiohttp.TraceConfig()
        config.on_request_start.append(self._start)
        config.on_request_end.append(self._end)
        config.on_request_exception.append(self._failed)
        return config

    async def _start(self, _: Any, context: SimpleNamespace, params: Any) -> None:
        auth = params.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ") if auth else None
        url = params.url
        context.exchange = Exchange(params.method, url.path, dict(url.query), token)
        self.exchanges.append(context.exchange)
        self.sent.set()
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)

    async def _end(self, _: Any, context: SimpleNamespace, params: Any) -> None:
        self.in_flight -= 1
        context.exchange.status = params.response.status
        if self.on_response is not None:
            self.on_response(context.exchange)

    async def _failed(self, _: Any, context: SimpleNamespace, params: Any) -> None:
        self.in_flight -= 1


@pytest.fixture
def ca() -> trustme.CA:
    """The private CA the simulator's certificate comes from."""
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> Path:
    """The CA certificate as a PEM file, for ``wincc.ca_file``."""
    path = tmp_path / "wincc-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


def server_context(ca: trustme.CA) -> ssl.SSLContext:
    """A server context presenting a certificate for 127.0.0.1 and localhost from ``ca``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture
async def sim(ca: trustme.CA) -> AsyncIterator[Simulator]:
    """The simulator over HTTPS on a free port, its plant frozen (``change_rate=0``)."""
    options = SimulatorOptions(
        port=0,
        tags=TAGS,
        alarms=ALARMS,
        username=USERNAME,
        password=PASSWORD,
        change_rate=0.0,
        seed=11,
    )
    async with Simulator(options, ssl_context=server_context(ca)) as simulator:
        yield simulator


@pytest.fixture
def settings(sim: Simulator, ca_file: Path) -> RestSettings:
    """Settings that reach ``sim`` over verified TLS."""
    return RestSettings(
        url=sim.url,
        username=USERNAME,
        password=SecretStr(PASSWORD),
        ca_file=ca_file,
        timeout=5.0,
        max_concurrency=4,
        batch_size=50,
    )


@pytest.fixture
async def client(settings: RestSettings) -> AsyncIterator[WinCCClient]:
    """The client exactly as the gateway builds it."""
    async with open_client(settings) as wincc:
        yield wincc


TracedFactory = Callable[..., RestClient]


@pytest.fixture
async def traced(settings: RestSettings) -> AsyncIterator[tuple[TracedFactory, Recorder]]:
    """A factory of ``RestClient`` on a session the ``Recorder`` watches.

    Keyword arguments override the settings (``timeout``, ``max_concurrency``,
    ``batch_size``, ``password``) or pass ``history_page``.
    """
    recorder = Recorder()
    clients: list[RestClient] = []
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=build_ssl_context(settings)),
        trace_configs=[recorder.trace_config()],
    ) as session:

        def make(**overrides: Any) -> RestClient:
            page = overrides.pop("history_page", 1000)
            chosen = settings.model_copy(update=overrides)
            made = RestClient(
                session,
                chosen.url,
                chosen.username,
                chosen.password,
                timeout=chosen.timeout,
                max_concurrency=chosen.max_concurrency,
                batch_size=chosen.batch_size,
                history_page=page,
            )
            clients.append(made)
            return made

        yield make, recorder
        for made in clients:
            await made.close()
