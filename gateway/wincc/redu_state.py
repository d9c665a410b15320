"""A redundant pair of WinCC Unified servers says itself which one is ACTIVE: each server's
``reduState`` subscription is followed, and the pair reads and writes where the servers
say, instead of only finding out from a server that stops answering.

A subscription that breaks is opened again with backoff; meanwhile a server that stops
answering still fails over as with any pair.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from gateway.backoff import Backoff
from gateway.errors import WinCCAuthError, WinCCError
from gateway.wincc.redundant import RedundantClient
from gateway.wincc.unified import UnifiedClient
from gateway.wincc.unified_queries import SUBSCRIBE_REDU_STATE

log = logging.getLogger(__name__)

RETRY_CAP = 10.0
"""Longest wait before opening a broken reduState subscription again."""


async def follow_redu_state(
    pair: RedundantClient, servers: Sequence[tuple[str, UnifiedClient]]
) -> None:
    """Follow every server's reduState until cancelled."""
    async with asyncio.TaskGroup() as group:
        for url, server in servers:
            group.create_task(_follow(pair, url, server), name=f"redu-state {url}")


async def _follow(pair: RedundantClient, url: str, server: UnifiedClient) -> None:
    backoff = Backoff(base=1.0, cap=RETRY_CAP)
    while True:
        try:
            await _subscribe(pair, url, server, backoff)
        except WinCCError as exc:
            log.debug("reduState of %s: %s; subscribing again", url, exc)
        await asyncio.sleep(backoff.next_delay())


async def _subscribe(
    pair: RedundantClient, url: str, server: UnifiedClient, backoff: Backoff
) -> None:
    token = await server.token()
    socket = server.socket(token)
    try:
        await socket.connect()
    except WinCCAuthError:
        socket = server.socket(await server.renew(token))
        await socket.connect()
    async with socket:
        await socket.subscribe("redu", SUBSCRIBE_REDU_STATE, {})
        async for note in socket.messages():
            state = _state(note.data) if note is not None else None
            if state is not None:
                backoff.reset()
                pair.reported(url, state)


def _state(data: dict[str, Any]) -> str | None:
    """``ACTIVE`` or ``PASSIVE`` from a reduState notification; None for anything else."""
    try:
        state = data["reduState"]["value"]["value"]
    except (KeyError, TypeError):
        return None
    return state if state in ("ACTIVE", "PASSIVE") else None
