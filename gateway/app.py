"""The one place that wires the gateway together and owns every task, in one TaskGroup.

Start: MQTT session first (status online, will offline), then the tag lists are resolved
by browsing WinCC, then one poller per scan class and the alarm poller. Stop (SIGTERM,
SIGINT): pollers stop taking work, the buffer drains within a time limit (what is left
stays on disk for the next start), the status is
set to offline, the broker connection closes, and the WinCC session logs out.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass, field

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway import __version__
from gateway.backoff import Backoff
from gateway.buffer import DurableBuffer, Message
from gateway.commands import Answer, CommandService, inbound_from, internal_error_answer
from gateway.config import GatewaySettings, PollGroup
from gateway.core.commands import CommandPolicy, Range
from gateway.core.samples import SampleDecider
from gateway.core.topics import TopicMap
from gateway.errors import WinCCError
from gateway.logs import setup_logging
from gateway.mqtt_session import MqttSession
from gateway.polling import AlarmPoller, PollObserver, SourceHealth, TagPoller, Topics
from gateway.wincc.base import WinCCClient
from gateway.wincc.connect import open_client
from gateway.wincc.models import TagType
from gateway.wincc.resolve import resolve_tags

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT = 10.0
"""Seconds a clean stop waits for queued messages to reach the broker."""


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
    ) -> None:
        self.settings = settings
        self.client = client
        self._observe = observe
        self.buffer = DurableBuffer(
            settings.buffer.path,
            settings.buffer.max_size,
            policy=settings.buffer.policy,
            sync=settings.buffer.sync,
        )
        self.topic_map = TopicMap()
        self.tag_types: dict[str, TagType] = {}
        self.alarm_poller: AlarmPoller | None = None
        commands = settings.commands
        self.commands = CommandService(
            prefix=settings.mqtt.topic_prefix,
            policy=CommandPolicy(
                writable=commands.writable,
                ranges=[Range(r.tags, r.min, r.max) for r in commands.ranges],
                max_age=commands.max_age,
                rate=commands.rate_limit,
                burst=commands.burst,
            ),
            client=client,
            tag_types=self.tag_types,
            topic_map=self.topic_map,
            known_alarms=lambda: self.alarm_poller.active if self.alarm_poller else {},
            source_down=lambda: self.source.state == "down",
            answer=self._answer,
        )
        self.session = MqttSession(
            settings.mqtt,
            self.buffer,
            subscriptions=self.commands.subscriptions,
            on_message=self._on_message,
        )
        self.source = SourceHealth(on_change=self.session.set_source)
        self.decider = SampleDecider(
            settings.quality.good_codes, drop_bad=settings.quality.policy == "drop"
        )
        self.topics = Topics(
            prefix=f"{settings.mqtt.topic_prefix}",
            qos=settings.mqtt.qos,
            retain=settings.mqtt.retain,
        )
        self.pollers: list[TagPoller] = []
        self.started = asyncio.Event()
        self._poll_tasks: list[asyncio.Task[None]] = []

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, then shut down cleanly."""
        restored = await self.buffer.open()
        self.decider.restore(restored.seqs, restored.last)
        try:
            await self._run(stop)
        finally:
            await self.buffer.close()

    async def _run(self, stop: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as group:
            session_task = group.create_task(self.session.run(), name="mqtt-session")
            self._poll_tasks.append(group.create_task(self._start_polling(group), name="startup"))
            await stop.wait()
            log.info("stopping: polling ends, buffered messages are published")
            for task in self._poll_tasks:
                task.cancel()
            self.session.stop()
            try:
                async with asyncio.timeout(SHUTDOWN_TIMEOUT):
                    await asyncio.shield(session_task)
            except TimeoutError:
                log.warning(
                    "stopping before the broker took everything: %d messages stay in the "
                    "buffer and are sent after the next start",
                    len(self.buffer),
                )
                session_task.cancel()

    async def _on_message(self, _client: aiomqtt.Client, message: aiomqtt.Message) -> None:
        """A command arrived: answer it, whatever it holds."""
        payload = message.payload if isinstance(message.payload, bytes | bytearray) else b""
        inbound = inbound_from(str(message.topic), bytes(payload), message.properties)
        try:
            await self.commands.handle(inbound)
        except Exception:
            log.exception("command on %s failed unexpectedly", inbound.topic[:200])
            await self._answer(internal_error_answer(self.commands, inbound))

    async def _answer(self, answer: Answer) -> None:
        properties = None
        if answer.correlation_data is not None and self.settings.mqtt.protocol == 5:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.CorrelationData = answer.correlation_data
        try:
            await self.session.publish_now(
                Message(answer.topic, answer.payload, 1, False), properties
            )
        except aiomqtt.MqttError as exc:
            log.warning("command answer to %s not delivered: %s", answer.topic[:200], exc)

    async def _start_polling(self, group: asyncio.TaskGroup) -> None:
        """Resolve the tag lists (retrying while WinCC is away), then start the pollers."""
        resolved = await self._resolve_until_done()
        for item in resolved:
            if not item.tags:
                log.warning("group %s: no tags to poll, group skipped", item.group.name)
                continue
            for name in item.tags:
                self.topic_map.add(name)
            poller = TagPoller(
                name=item.group.name,
                interval=item.group.interval,
                deadband=item.group.deadband,
                tags=item.tags,
                client=self.client,
                decider=self.decider,
                topic_map=self.topic_map,
                topics=self.topics,
                buffer=self.buffer,
                source=self.source,
                backfill=self.settings.backfill if self.settings.backfill.enabled else None,
                observe=self._observe,
            )
            self.pollers.append(poller)
            self._poll_tasks.append(group.create_task(poller.run(), name=f"poll:{poller.name}"))
            log.info(
                "group %s: polling %d tags every %gs", poller.name, len(item.tags), poller.interval
            )
        if self.settings.alarms.enabled:
            self.alarm_poller = AlarmPoller(
                interval=self.settings.alarms.interval,
                client=self.client,
                topics=self.topics,
                buffer=self.buffer,
                source=self.source,
            )
            self._poll_tasks.append(group.create_task(self.alarm_poller.run(), name="alarms"))
        self.started.set()

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


def _install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except NotImplementedError:  # Windows: the service wrapper delivers a console event
            signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stop.set))


async def run_gateway(settings: GatewaySettings) -> int:
    """``wincc-gateway run``: the gateway until SIGTERM/SIGINT; returns the exit code."""
    secrets = [
        secret.get_secret_value()
        for secret in (settings.wincc.password, settings.mqtt.password)
        if secret is not None
    ]
    setup_logging(settings.log.level, settings.log.format, secrets)
    log.info("wincc-gateway %s starting", __version__)
    stop = asyncio.Event()
    _install_signal_handlers(stop)
    try:
        async with open_client(settings.wincc) as client:
            await Gateway(settings, client).run(stop)
    except Exception:
        log.exception("the gateway stopped on an unexpected error")
        return 1
    log.info("stopped")
    return 0
