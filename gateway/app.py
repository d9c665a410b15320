"""The one place that wires the gateway together and owns every task, in one TaskGroup.

Start: MQTT session first (status online, will offline), then the tag lists are resolved
by browsing WinCC, then one poller per scan class and the alarm poller, or, with a WinCC
that pushes its changes (Unified, ``mode = "subscribe"``), one subscription source for all
of them. Stop (SIGTERM, SIGINT): the sources stop taking work, the buffer drains within a
time limit (what is left stays on disk for the next start), the status is set to
offline, the broker connection closes, and the WinCC session logs out.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from gateway.alarm_sink import AlarmFeed, AlarmSink, restore_alarms
from gateway.answers import Answer
from gateway.backlog_watch import watch_backlog
from gateway.backoff import Backoff
from gateway.buffer.outbox import DurableBuffer
from gateway.buffer.store import Message, PollMark
from gateway.commands import CommandService
from gateway.config import GatewaySettings, PollGroup
from gateway.core.commands import CommandPolicy, Inbound
from gateway.core.models import Alarm, Reading, ReadResult, TagType
from gateway.core.samples import SampleDecider
from gateway.core.shares import share_group
from gateway.core.topics import TopicMap
from gateway.errors import MqttUnavailable, WinCCError
from gateway.formats import build_format
from gateway.formats.base import FormatContext
from gateway.health import HealthServer
from gateway.metrics import GatewayMetrics, PairRole
from gateway.mqtt.cloud import login_source
from gateway.mqtt.session import MqttSession
from gateway.polling import AlarmPoller, PollObserver, SourceHealth, TagPoller
from gateway.recent import RecentChanges
from gateway.sink import GroupFeed, TagSink
from gateway.subscription import SubscribedAlarms, SubscribedGroup, SubscriptionSource
from gateway.takeover import Takeover
from gateway.wincc.base import WinCCClient
from gateway.wincc.resolve import resolve_tags
from gateway.wincc.settings import UnifiedSettings
from gateway.wincc.unified import UnifiedClient

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT = 10.0
"""Seconds a stop waits for command answers beyond WinCC's own time limits."""
LEAVE_WAIT = 5.0
"""Seconds a stop that could not drain waits for the session to leave the broker."""

RELOADABLE = frozenset({"poll", "commands"})
"""Config sections a reload (SIGHUP) applies without a restart."""


def reloaded(old: GatewaySettings, new: GatewaySettings) -> GatewaySettings:
    """``old`` with what a reload applies of ``new`` (``RELOADABLE``); the log names the
    other sections that changed, which wait for a restart."""
    later = [name for name in type(new).model_fields if name not in RELOADABLE]
    later = [name for name in later if getattr(new, name) != getattr(old, name)]
    if later:
        log.warning(
            "config reloaded: changes to [%s] take effect after a restart", ", ".join(later)
        )
    return old.model_copy(update={"poll": new.poll, "commands": new.commands})


@dataclass(slots=True)
class ResolvedGroup:
    """A scan class with its globs resolved to tag names."""

    group: PollGroup
    tags: list[str] = field(default_factory=list)


class Gateway:
    """WinCC in, MQTT out: the pollers, the buffer and the MQTT session of one gateway."""

    def __init__(
        self,
        settings: GatewaySettings,
        client: WinCCClient,
        *,
        observe: PollObserver | None = None,
        takeover: Takeover | None = None,
        pair: PairRole | None = None,
    ) -> None:
        self.settings = settings
        self._takeover = takeover  # what the broker retained, for a standby taking over
        self.pair = pair  # the active instance of a pair
        self.client = client
        self._observe = observe
        self._stopping = False
        self._published_alarms: dict[str, Alarm] = {}
        self.decider = SampleDecider(
            settings.quality.good_codes, drop_bad=settings.quality.policy == "drop"
        )
        self.buffer = DurableBuffer(
            settings.buffer.path,
            settings.buffer.max_size,
            policy=settings.buffer.policy,
            sync=settings.buffer.sync,
            on_stored=self.decider.stored,
            on_lost=self.decider.lost,
        )
        self.topic_map = TopicMap()
        self.changes = RecentChanges()  # what the status page lists as the last changes
        self.tag_types: dict[str, TagType] = {}
        self.output = build_format(
            FormatContext(settings, self.topic_map, self.tag_types, self.decider.current)
        )
        self.alarm_poller: AlarmFeed | None = None
        self._alarm_sink: AlarmSink | None = None
        wincc = settings.wincc
        subscribing = isinstance(wincc, UnifiedSettings) and wincc.mode == "subscribe"
        self._subscriber = client if subscribing and isinstance(client, UnifiedClient) else None
        self.started = asyncio.Event()
        self.session = MqttSession(
            settings.mqtt,
            self.buffer,
            self.output,
            on_message=self._on_message,
            login=login_source(settings),
            share_group=(
                share_group(settings.mqtt.topic_prefix)
                if settings.redundancy.role == "auto"
                else None
            ),
        )
        self.commands = CommandService(
            layout=self.output.commands,
            policy=CommandPolicy(**settings.commands.rules()),
            client=client,
            tag_types=self.tag_types,
            topic_map=self.topic_map,
            known_alarms=lambda: self.alarm_poller.active if self.alarm_poller else {},
            source_down=lambda: self.source.state == "down",
            ready=self.started.is_set,
            answer=self._answer,
            connected=self.session.connected,
            publish_own=self._publish_own,
            read_back=self._read_back,
        )
        self.source = SourceHealth(on_change=self.session.set_source)
        self.pollers: list[GroupFeed] = []
        self._marks: dict[str, PollMark] = {}  # from the last run, until its group polls
        self._group: asyncio.TaskGroup | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}  # startup, pollers, alarms by name
        self.metrics = GatewayMetrics(self)
        self.health = HealthServer(settings.health, self)

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, then shut down cleanly."""
        restored = await self.buffer.open()
        self.decider.restore(restored.seqs, restored.last, restored.stamps)
        self._marks = restored.marks
        self._published_alarms = restore_alarms(restored.alarms)
        try:
            await self._run(stop)
        finally:
            await self.buffer.close()

    async def _run(self, stop: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as group:
            self._group = group
            session_task = group.create_task(self.session.run(), name="mqtt-session")
            commands_task = group.create_task(self.commands.run(), name="commands")
            self._spawn("health", self.health.run())
            self._spawn("buffer", self.buffer.run())
            self._spawn("backlog", watch_backlog(lambda: len(self.buffer), self.session.connected))
            self._spawn("startup", self._start_polling())
            await stop.wait()
            log.info("stopping: polling ends, buffered messages are published")
            self._stopping = True
            for task in self._tasks.values():
                task.cancel()
            await self._finish_commands(commands_task)
            await self.buffer.settle()
            self.session.stop()
            try:
                async with asyncio.timeout(self.settings.mqtt.drain_timeout):
                    await asyncio.shield(session_task)
            except TimeoutError:
                log.warning(
                    "stopping before the broker took everything: %d messages stay in the "
                    "buffer and are sent after the next start",
                    len(self.buffer),
                )
                # Cancelled, the session leaves so that the broker sets the status offline.
                session_task.cancel()
                await asyncio.wait({session_task}, timeout=LEAVE_WAIT)

    async def _finish_commands(self, commands: asyncio.Task[None]) -> None:
        """Let a write already sent to WinCC end and be answered before the broker goes:
        waiting commands are refused, one in flight is awaited (WinCC's timeout bounds
        it, for the write and its read-back)."""
        self.commands.close()
        limit = 2 * self.settings.wincc.timeout + SHUTDOWN_TIMEOUT
        try:
            async with asyncio.timeout(limit):
                await asyncio.shield(commands)
        except TimeoutError:
            log.warning("stopping: command answers not all delivered within %g s", limit)
            commands.cancel()

    def _spawn(self, name: str, work: Coroutine[Any, Any, None]) -> None:
        """Start a task the gateway's TaskGroup owns, remembered by name to stop it later.

        Once stopping, nothing new starts (a startup racing the stop must not leave
        pollers behind that nobody cancels).
        """
        assert self._group is not None
        if self._stopping:
            work.close()
            return
        self._tasks[name] = self._group.create_task(work, name=name)

    def _stop(self, name: str) -> None:
        task = self._tasks.pop(name, None)
        if task is not None:
            task.cancel()

    def _on_message(self, inbound: Inbound) -> None:
        """A command arrived (stamped with its arrival by the session): hand it over; it
        is answered, whatever it holds, without holding up the next message."""
        try:
            self.commands.submit(inbound)
        except Exception:
            log.exception("command on %s failed unexpectedly", inbound.topic[:200])
            self.commands.internal_error(inbound)

    def _publish_own(self, messages: list[Message]) -> None:
        """Publish what the output format answers a control command with (births
        again), ahead of the buffered data, without holding up the next command."""
        if self._group is not None and not self._stopping:
            self._group.create_task(self.session.publish_own(messages), name="mqtt-own")

    async def _read_back(self, reading: Reading) -> None:
        """A tag's value read back after a write is a sample like any other: published
        by the sink of the group that reads the tag (a tag no group reads has none)."""
        for feed in self.pollers:
            if reading.name in feed.tags:
                await feed.sink.publish(ReadResult([reading]))
                return

    async def _answer(self, answer: Answer) -> bool:
        """Publish one command answer; False when the broker connection is not there."""
        try:
            await self.session.publish_now(
                Message(answer.topic, answer.payload, 1, False),
                correlation_data=answer.correlation_data,
            )
        except MqttUnavailable as exc:
            log.info("command answer to %s waits for the broker: %s", answer.topic[:200], exc)
            return False
        return True

    async def _start_polling(self) -> None:
        """Resolve the tag lists (retrying while WinCC is away), then start what feeds the
        sinks: pollers, or the subscriptions of a WinCC that pushes its changes."""
        resolved = await self._resolve_until_done()
        if self._takeover is not None:  # continue the seqs the active instance published
            groups = {item.group.name: item.tags for item in resolved}
            self._marks.update(self._takeover.apply(self.decider, groups))
        await self._announce(resolved)
        if self.settings.alarms.enabled:
            self._alarm_sink = AlarmSink(
                output=self.output, buffer=self.buffer, published=self._published_alarms
            )
        if self._subscriber is not None:
            self._subscribe(self._subscriber, resolved)
        else:
            self._start_pollers(resolved)
            if self._alarm_sink is not None:
                self.alarm_poller = AlarmPoller(
                    interval=self.settings.alarms.interval,
                    client=self.client,
                    sink=self._alarm_sink,
                    source=self.source,
                )
                self._spawn("alarms", self.alarm_poller.run())
        self.started.set()

    def _subscribe(self, client: UnifiedClient, resolved: list[ResolvedGroup]) -> None:
        """One subscription source for every group and the alarms, replacing the one
        before (after a reload: each group fills its gap from where it stood)."""
        self._stop("subscription")
        before = {feed.name: feed.sink for feed in self.pollers}
        groups = []
        for item in resolved:
            if not item.tags:
                log.warning("group %s: no tags to subscribe to, group skipped", item.group.name)
                continue
            sink = self._new_sink(item, before.get(item.group.name))
            groups.append(SubscribedGroup(item.group.name, item.group.interval, item.tags, sink))
            log.info("group %s: subscribed to %d tags", item.group.name, len(item.tags))
        self.pollers = list[GroupFeed](groups)
        alarms = self._alarm_sink
        if alarms is not None:
            self.alarm_poller = SubscribedAlarms(self.settings.alarms.interval, alarms)
        assert isinstance(self.settings.wincc, UnifiedSettings)
        source = SubscriptionSource(
            client=client,
            groups=groups,
            alarms=alarms,
            source=self.source,
            chunk=self.settings.wincc.subscribe_chunk,
            observe=self._observe_poll,
        )
        self._spawn("subscription", source.run())

    def _new_sink(self, item: ResolvedGroup, before: TagSink | None) -> TagSink:
        """The sink of a group, filling the gap since ``before`` stopped (or since the
        last run)."""
        group = item.group
        for name in item.tags:
            self.topic_map.add(name)
        return TagSink(
            name=group.name,
            deadband=group.deadband,
            archive=self.client,
            decider=self.decider,
            output=self.output,
            buffer=self.buffer,
            backfill=self.settings.backfill if self.settings.backfill.enabled else None,
            resume=before.mark if before is not None else self._marks.pop(group.name, None),
            changes=self.changes,
        )

    async def _announce(self, resolved: list[ResolvedGroup]) -> None:
        """Tell the output format which tags each group reads, and publish what it must
        say before their data (Sparkplug births), before any poller commits data."""
        catalog = {item.group.name: item.tags for item in resolved}
        await self.session.publish_own(self.output.catalog(catalog))

    def _start_pollers(self, resolved: list[ResolvedGroup]) -> None:
        """One poller per group; a running poller whose group is unchanged is kept."""
        running = {poller.name: poller for poller in self.pollers}
        self.pollers = []
        for item in resolved:
            group = item.group
            old = running.pop(group.name, None)
            if old is not None and (old.interval, old.sink.deadband, old.tags) == (
                group.interval,
                group.deadband,
                item.tags,
            ):
                self.pollers.append(old)
                continue
            if old is not None:
                self._stop(f"poll:{group.name}")
            if not item.tags:
                log.warning("group %s: no tags to poll, group skipped", group.name)
                continue
            sink = self._new_sink(item, old.sink if old is not None else None)
            poller = TagPoller(
                name=group.name,
                interval=group.interval,
                tags=item.tags,
                client=self.client,
                sink=sink,
                source=self.source,
                observe=self._observe_poll,
            )
            self.pollers.append(poller)
            self._spawn(f"poll:{group.name}", poller.run())
            log.info(
                "group %s: polling %d tags every %gs", group.name, len(item.tags), group.interval
            )
        for name in running:
            self._stop(f"poll:{name}")
            log.info("group %s: no longer polled", name)

    def _observe_poll(self, group: str, seconds: float) -> None:
        self.metrics.observe_poll(group, seconds)
        if self._observe is not None:
            self._observe(group, seconds)

    async def reload(self, new: GatewaySettings) -> None:
        """Apply a changed configuration without touching the MQTT session or the buffer.

        ``[[poll]]`` and ``[commands]`` take effect at once; other sections need a restart,
        and the log says so. If WinCC cannot resolve the new tag lists, the old ones stay.
        """
        previous = self.settings
        self.settings = reloaded(previous, new)
        try:
            resolved = await self._resolve()
        except WinCCError as exc:
            self.settings = previous
            log.error("config reload failed, the previous tag lists stay: %s", exc)  # noqa: TRY400
            return
        self.commands.policy.reconfigure(**self.settings.commands.rules())
        await self._announce(resolved)
        if self._subscriber is not None:
            self._subscribe(self._subscriber, resolved)
            log.info("config reloaded: %d groups subscribed", len(self.pollers))
        else:
            self._start_pollers(resolved)
            log.info("config reloaded: %d groups polling", len(self.pollers))

    async def _resolve_until_done(self) -> list[ResolvedGroup]:
        backoff = Backoff(base=1.0, cap=30.0)
        while True:
            try:
                return await self._resolve()
            except WinCCError as exc:
                await self.source.failed(exc)
                await asyncio.sleep(backoff.next_delay())

    async def _resolve(self) -> list[ResolvedGroup]:
        """Globs to tag names; a tag listed by two groups is polled by the first only."""
        claimed: dict[str, str] = {}
        resolved = []
        for group in self.settings.poll:
            result = await resolve_tags(self.client, group.tags)
            for pattern in result.unmatched:
                log.warning("group %s: no tag matches %r", group.name, pattern)
            item = ResolvedGroup(group)
            for info in result.tags:
                owner = claimed.setdefault(info.name, group.name)
                if owner == group.name:
                    item.tags.append(info.name)
                else:
                    log.warning(
                        "group %s: %s is already polled by group %s", group.name, info.name, owner
                    )
            resolved.append(item)
            self.tag_types.update((info.name, info.type) for info in result.tags if info.type)
        if self.settings.commands.writable:
            writable = await resolve_tags(self.client, self.settings.commands.writable)
            for pattern in writable.unmatched:
                log.warning("commands.writable: no tag matches %r", pattern)
            for info in writable.tags:
                if info.type:
                    self.tag_types[info.name] = info.type
                    self.topic_map.add(info.name)
        await self.source.ok()
        return resolved
