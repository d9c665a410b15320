"""The source that pushes: WinCC Unified's subscriptions feed the groups' sinks as values
change, instead of a poller asking for every tag on an interval.

One WebSocket carries every subscription: each group's tags in chunks of
``wincc.subscribe_chunk`` names, and the active alarms. After every (re)subscription, one
full read of every group (timed like a poll, for the metrics) goes to its sink (the gap
since the link was lost filled from the archive first) and one full list of the active
alarms to the alarm sink, so what changed while no subscription ran is not missed. Then
notifications are taken as they come and committed in batches: what arrives within
``GATHER`` of the first, or while the buffer commits the last batch, goes in the same one,
so a burst of changes costs a few transactions, not one per change.

The link is pinged every group interval (the shortest); a link that stops answering is given up
within two pings. The session is extended while only subscriptions run. Any failure ends
the socket; the next one is opened after a backoff with jitter.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from gateway.alarm_sink import AlarmSink
from gateway.backoff import Backoff
from gateway.core.models import Alarm, Reading, ReadResult
from gateway.core.timestamps import now_ms
from gateway.core.values import why
from gateway.errors import WinCCAuthError, WinCCError, WinCCProtocolError, WinCCUnavailable
from gateway.polling import RETRY_CAP, SLACK_MS, PollObserver, SourceHealth
from gateway.sink import PollStats, TagSink
from gateway.tasks import first_to_end
from gateway.wincc import unified_queries as q
from gateway.wincc.unified import UnifiedClient
from gateway.wincc.unified_parse import alarm_id, parse_alarm, parse_notification
from gateway.wincc.unified_ws import SubscriptionSocket

log = logging.getLogger(__name__)

EXTEND_DEFAULT = 60.0
"""Seconds between two session extensions when the runtime did not say its auto-logoff."""
GATHER = 0.01
"""Seconds notifications gather before a commit: a burst costs a few transactions, not one
per change, for at most this much latency."""
ALARMS = "alarms"
"""The id of the alarm subscription (tag subscriptions are ``<group>/<n>``)."""


@dataclass(slots=True)
class SubscribedGroup:
    """A scan class fed by subscription; ``interval`` is how often its link is checked."""

    name: str
    interval: float
    tags: list[str]
    sink: TagSink
    stats: PollStats = field(init=False)

    def __post_init__(self) -> None:
        self.stats = self.sink.stats


@dataclass(slots=True)
class SubscribedAlarms:
    """The alarms fed by subscription; ``interval`` is how often the link is checked."""

    interval: float
    sink: AlarmSink

    @property
    def stats(self) -> PollStats:
        """The alarm sink's counters."""
        return self.sink.stats

    @property
    def active(self) -> dict[str, Alarm]:
        """The alarms active as last committed, by id."""
        return self.sink.active


class SubscriptionSource:
    """Owns the subscription socket of one gateway and feeds the sinks from it."""

    def __init__(
        self,
        *,
        client: UnifiedClient,
        groups: list[SubscribedGroup],
        alarms: AlarmSink | None,
        source: SourceHealth,
        chunk: int,
        observe: PollObserver | None = None,
    ) -> None:
        self.groups = groups
        self._observe = observe
        self._client = client
        self._alarms = alarms
        self._source = source
        self._chunk = chunk
        self._ping_every = min((group.interval for group in groups), default=1.0)
        self._group_of: dict[str, SubscribedGroup] = {}
        self._pending: dict[str, list[Reading]] = {}
        self._errors: dict[str, dict[str, str]] = {}
        self._arrived = asyncio.Event()
        self._alarm_changes: list[object] = []
        self._pong = 0.0
        self._reported: set[str] = set()  # reasons of unreadable notifications, logged once

    async def run(self) -> None:
        """Subscribe, take changes, resubscribe after a loss; until cancelled."""
        backoff = Backoff(base=1.0, cap=RETRY_CAP)
        while True:
            try:
                socket = await self._open()
                try:
                    await self._subscribe(socket)
                    await self._catch_up()
                    await self._source.ok()
                    backoff.reset()
                    await self._follow(socket)
                finally:
                    await socket.close()
            except WinCCError as exc:
                for group in self.groups:
                    group.stats.failures += 1
                    group.sink.interrupted()
                await self._source.failed(exc)
                await asyncio.sleep(backoff.next_delay())

    async def _open(self) -> SubscriptionSocket:
        """A connected socket; a refused session is renewed once."""
        token = await self._client.token()
        socket = self._client.socket(token)
        try:
            await socket.connect()
        except WinCCAuthError:
            socket = self._client.socket(await self._client.renew(token))
            await socket.connect()
        return socket

    async def _subscribe(self, socket: SubscriptionSocket) -> None:
        """Every group's tags in chunks, and the alarms."""
        self._group_of.clear()
        for group in self.groups:
            for start in range(0, len(group.tags), self._chunk):
                subscription = f"{group.name}/{start // self._chunk}"
                self._group_of[subscription] = group
                names = group.tags[start : start + self._chunk]
                await socket.subscribe(subscription, q.SUBSCRIBE_TAG_VALUES, {"names": names})
        if self._alarms is not None:
            await socket.subscribe(ALARMS, q.SUBSCRIBE_ALARMS, {})

    async def _catch_up(self) -> None:
        """One full read of every group, gaps filled first, and the full alarm list."""
        loop = asyncio.get_running_loop()
        for group in self.groups:
            started = loop.time()
            read_at = now_ms()
            result = await self._client.read_many(group.tags)
            newest = max((r.ts_ms for r in result.readings), default=0)
            if group.sink.gap_open and result.readings:
                slack = SLACK_MS + int((loop.time() - started) * 1000)
                await group.sink.fill(newest, slack, result)
            await group.sink.publish(result)
            if result.readings:
                duration = int((loop.time() - started) * 1000)
                await group.sink.advance(newest, duration, read_at)
            self._alive(group.stats)
            if self._observe is not None:
                self._observe(group.name, loop.time() - started)
        if self._alarms is not None:
            await self._alarms.publish(await self._client.active_alarms())
            self._alive(self._alarms.stats)

    async def _follow(self, socket: SubscriptionSocket) -> None:
        """Take notifications, commit them in batches and keep the link and session
        alive, until something fails (raised as the ``WinCCError`` it is)."""
        self._pong = asyncio.get_running_loop().time()
        tasks = {
            asyncio.create_task(self._receive(socket), name="subscription-receive"),
            asyncio.create_task(self._commit(), name="subscription-commit"),
            asyncio.create_task(self._keep_alive(socket), name="subscription-keepalive"),
        }
        await first_to_end(tasks)

    async def _receive(self, socket: SubscriptionSocket) -> None:
        """Sort each notification to its group (or the alarms) for the next commit."""
        loop = asyncio.get_running_loop()
        async for notification in socket.messages():
            self._pong = loop.time()
            if notification is None:
                continue
            if notification.id == ALARMS:
                if self._alarms is not None:
                    self._alarm_changes.append(notification.data.get("activeAlarms"))
                    self._arrived.set()
                continue
            group = self._group_of.get(notification.id)
            if group is None:
                continue
            try:
                name, reading, error = parse_notification(notification.data.get("tagValues"))
            except WinCCProtocolError as exc:
                self._unreadable(str(exc))
                continue
            if reading is not None:
                self._pending.setdefault(group.name, []).append(reading)
            elif error is not None:
                self._errors.setdefault(group.name, {})[name] = error
            self._arrived.set()

    async def _commit(self) -> None:
        """Hand what arrived to the sinks, batch by batch."""
        while True:
            await self._arrived.wait()
            await asyncio.sleep(GATHER)
            self._arrived.clear()
            pending, self._pending = self._pending, {}
            errors, self._errors = self._errors, {}
            changes, self._alarm_changes = self._alarm_changes, []
            for group in self.groups:
                readings = pending.get(group.name, [])
                failed = errors.get(group.name, {})
                if not readings and not failed:
                    continue
                await group.sink.publish(ReadResult(readings, failed))
                if readings:
                    newest = max(reading.ts_ms for reading in readings)
                    await group.sink.advance(newest, 0, now_ms())
            for item in changes:
                await self._alarm_change(item)

    async def _alarm_change(self, item: object) -> None:
        """One alarm notification to the alarm sink."""
        assert self._alarms is not None
        try:
            alarm, key = parse_alarm(item)
        except (KeyError, TypeError, ValueError) as exc:
            self._unreadable(f"activeAlarms notification: {why(exc)}")
            return
        if alarm is None:
            await self._alarms.remove(alarm_id(*key))
            return
        self._client.remember_alarm(alarm.id, key)
        await self._alarms.change(alarm)

    def _unreadable(self, reason: str) -> None:
        """Skip a notification that names nothing it could belong to; logged once per
        reason, so a runtime that sends such things does not flood the log."""
        if reason not in self._reported:
            self._reported.add(reason)
            log.warning("%s; skipped (further ones like it are not logged)", reason)

    async def _keep_alive(self, socket: SubscriptionSocket) -> None:
        """Ping the link and extend the session; a link silent for two pings is lost."""
        loop = asyncio.get_running_loop()
        every = self._ping_every
        extend_every = (self._client.auto_logoff or 3 * EXTEND_DEFAULT) / 3
        extended = loop.time()
        while True:
            await asyncio.sleep(every)
            now = loop.time()
            if now - self._pong > 2 * every:
                raise WinCCUnavailable("the subscription link stopped answering pings")
            for group in self.groups:
                self._alive(group.stats)  # answered within the last two pings
            if self._alarms is not None:
                self._alive(self._alarms.stats)
            if now - extended >= extend_every:
                extended = now
                await self._client.extend_session()
            await socket.ping()

    def _alive(self, stats: PollStats) -> None:
        """The link answered: counted like a poll, for health and metrics."""
        stats.polls += 1
        stats.last_success = asyncio.get_running_loop().time()
