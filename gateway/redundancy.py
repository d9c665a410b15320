"""``[redundancy] role = "auto"``: one instance of a gateway pair, standby until its turn,
active until it stops or loses the broker, then standby again.

The active instance runs the whole gateway. Once its broker connection is lost it cannot
know whether the standby has taken over, so it stops polling and writing at once (the
gateway is cancelled, not drained) and waits for its turn again; the keepalive derived
from ``redundancy.takeover`` makes that happen before the broker sends its will, which is
what lets the standby go on: never two writers.

SIGHUP reloads what a single gateway reloads: the active instance applies it at once, a
standby keeps it for its next turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

from gateway.app import Gateway, reloaded
from gateway.buffer.supersede import supersede
from gateway.config import GatewaySettings
from gateway.metrics import PairRole
from gateway.mqtt.standby import Standby
from gateway.standby_health import standby_health
from gateway.takeover import Takeover
from gateway.wincc.base import WinCCClient

log = logging.getLogger(__name__)

LOST_CHECK = 0.05
"""Seconds between two looks at the session's connected flag (it offers no lost event)."""


def pair_settings(settings: GatewaySettings) -> GatewaySettings:
    """The settings of this instance: its own client id, the keepalive of the takeover."""
    redundancy = settings.redundancy
    mqtt = settings.mqtt.model_copy(
        update={
            "client_id": f"{settings.mqtt.client_id}-{redundancy.name}",
            "keepalive": float(redundancy.keepalive),
        }
    )
    return settings.model_copy(update={"mqtt": mqtt})


class Pair:
    """This process as one instance of a pair: standby, active, standby again, ..."""

    def __init__(self, settings: GatewaySettings, client: WinCCClient) -> None:
        self.settings = settings
        self._client = client
        self.role = PairRole(settings.redundancy.name)
        self._gateway: Gateway | None = None  # while active
        self._reload_due = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Standby, active, standby again, ... until ``stop`` is set."""
        name = self.role.instance
        while not stop.is_set():
            own = pair_settings(self.settings)
            standby = Standby(own.mqtt, name, own.redundancy.takeover)
            async with standby_health(own.health, standby, self.role):
                log.info("standby (instance %s): polling nothing until the active one goes", name)
                takeover = await _first(standby.wait_for_turn(), stop)
            if takeover is None:
                return
            self.role.takeovers += 1
            dropped = await asyncio.to_thread(supersede, own.buffer.path)
            log.info(
                "taking over (instance %s): %d tags continue from the seqs the broker "
                "retained; %d messages of an earlier turn superseded by the backfill",
                name,
                len(takeover.samples),
                dropped,
            )
            self._reload_due.clear()  # the gateway starts with the settings as they are now
            own = pair_settings(self.settings)
            self._gateway = Gateway(own, self._client, takeover=takeover, pair=self.role)
            claims = Standby(own.mqtt, name, own.redundancy.takeover)
            try:
                if not await self._active_until_lost(self._gateway, claims, stop):
                    return
            finally:
                self._gateway = None
            log.warning("stopped polling and writing; standby again")

    async def reload(self, new: GatewaySettings) -> None:
        """SIGHUP: what a single gateway applies at once (``[[poll]]``, ``[commands]``),
        the active instance applies at once, a standby from its next turn."""
        self.settings = reloaded(self.settings, new)
        if self._gateway is None:
            log.info("config reloaded: the standby polls as now configured from its next turn")
            return
        self._reload_due.set()  # applied by the turn's own task, which ends with the turn

    async def _apply_reloads(self, gateway: Gateway) -> None:
        """Reload the active gateway once it has started, after each SIGHUP."""
        await gateway.started.wait()
        while True:
            await self._reload_due.wait()
            self._reload_due.clear()
            await gateway.reload(pair_settings(self.settings))

    async def _active_until_lost(
        self, gateway: Gateway, claims: Standby, stop: asyncio.Event
    ) -> bool:
        """Run the gateway until ``stop`` (False, a clean stop), or until its broker
        connection, once up, is lost or another instance claims the turn (True: the
        gateway is cancelled at once, nothing drained)."""
        running = asyncio.create_task(gateway.run(stop), name="gateway")
        watching = asyncio.create_task(_lost(gateway, claims, stop), name="gateway-lost")
        reloading = asyncio.create_task(self._apply_reloads(gateway), name="gateway-reload")
        try:
            await asyncio.wait({running, watching, reloading}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watching.cancel()
            reloading.cancel()
            if not running.done() and (watching.done() or reloading.done()):
                running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
            for task in (watching, reloading):
                with contextlib.suppress(asyncio.CancelledError):
                    await task  # a reload's unexpected error ends the process, as it does alone
        return watching.done() and not watching.cancelled() and not stop.is_set()


async def _first(wait: Coroutine[Any, Any, Takeover], stop: asyncio.Event) -> Takeover | None:
    """The takeover, or None when stopped first."""
    turn = asyncio.ensure_future(wait)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({turn, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (turn, stopped):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return turn.result() if turn.done() and not turn.cancelled() else None


async def _lost(gateway: Gateway, claims: Standby, stop: asyncio.Event) -> None:
    """Return once the session, having been connected, is not (a stop's own disconnect
    is no loss), or once another instance claimed the turn."""
    claimed = asyncio.create_task(claims.hold(), name="claims")
    try:
        connected = gateway.session.connected
        await _first_done(claimed, connected.wait())
        while not claimed.done() and (connected.is_set() or stop.is_set()):  # noqa: ASYNC110
            await asyncio.sleep(LOST_CHECK)  # the session offers no event for a loss
        if claimed.done():
            log.warning("instance %s claimed the turn: giving way", claimed.result())
            gateway.session.giving_way = True  # its status stands: no offline, no will
        else:
            log.warning("broker lost: this instance cannot know whether the standby went on")
    finally:
        claimed.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await claimed


async def _first_done(task: asyncio.Task[str], other: Coroutine[Any, Any, Any]) -> None:
    """Wait for ``task`` or ``other``, whichever ends first (``other`` is then dropped)."""
    waiting = asyncio.ensure_future(other)
    try:
        await asyncio.wait({task, waiting}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiting.cancel()
