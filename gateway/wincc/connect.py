"""From ``[wincc]`` settings to a working client: TLS, the HTTP session, the dialect.

The only place where TLS verification can be switched off, and the only place that knows
which class serves which dialect.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import assert_never
from urllib.parse import urlsplit

import aiohttp

from gateway.errors import ConfigError, WinCCError
from gateway.wincc.base import WinCCClient
from gateway.wincc.classic import ClassicClient, base_url
from gateway.wincc.http import HttpOptions
from gateway.wincc.redu_state import follow_redu_state
from gateway.wincc.redundant import RedundantClient
from gateway.wincc.rest import RestClient
from gateway.wincc.settings import ClassicSettings, RestSettings, UnifiedSettings, WinCCSettings
from gateway.wincc.unified import UnifiedClient


def build_ssl_context(settings: WinCCSettings) -> ssl.SSLContext | bool:
    """Verification on, trusting ``ca_file`` alone when given, else the system CAs.

    ``verify_tls = false`` returns ``False`` (aiohttp: no verification at all).
    """
    if not settings.verify_tls:
        return False
    try:
        return ssl.create_default_context(
            cafile=None if settings.ca_file is None else str(settings.ca_file)
        )
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError([f"wincc.ca_file: cannot load {settings.ca_file}: {exc}"]) from exc


def _options(settings: WinCCSettings) -> HttpOptions:
    """The request settings every dialect's client takes alike."""
    return HttpOptions(
        timeout=settings.timeout,
        max_concurrency=settings.max_concurrency,
        batch_size=settings.batch_size,
    )


def _client(session: aiohttp.ClientSession, settings: WinCCSettings, url: str) -> WinCCClient:
    """The client of the settings' dialect for the server at ``url``; a new dialect adds
    one case."""
    credentials = (settings.username, settings.password)
    match settings:
        case RestSettings():
            return RestClient(session, url, *credentials, **_options(settings))
        case ClassicSettings():
            return ClassicClient(
                session,
                base_url(url),
                *credentials,
                **_options(settings),
                accept_language=settings.accept_language,
                archive=settings.archive,
                alarm_filter=settings.alarm_filter,
            )
        case UnifiedSettings():
            return UnifiedClient(
                session,
                url,
                *credentials,
                **_options(settings),
                logging_tag=settings.logging_tag,
            )
        case _:
            assert_never(settings)


@asynccontextmanager
async def open_client(settings: WinCCSettings) -> AsyncIterator[WinCCClient]:
    """A client of the configured dialect on its own session; both closed on exit. A
    redundant pair (several URLs) gets one client per server behind a ``RedundantClient``."""
    for url in settings.urls:
        if urlsplit(url).scheme != "https" and not settings.allow_insecure_http:
            raise WinCCError(f"{url}: refusing plain http; set allow_insecure_http = true")
    servers = len(settings.urls)
    connector = aiohttp.TCPConnector(
        limit=settings.max_concurrency * servers, ssl=build_ssl_context(settings)
    )
    async with aiohttp.ClientSession(connector=connector) as session:
        clients = [(url, _client(session, settings, url)) for url in settings.urls]
        client = clients[0][1] if servers == 1 else RedundantClient(clients)
        unified = [(url, one) for url, one in clients if isinstance(one, UnifiedClient)]
        follower = None
        if isinstance(client, RedundantClient) and unified:
            follower = asyncio.create_task(follow_redu_state(client, unified), name="redu")
        try:
            yield client
        finally:
            if follower is not None:
                follower.cancel()
                await asyncio.wait({follower})
            await client.close()
