"""MQTT commands in, tag writes and alarm acknowledgements out, every one answered once.

The decisions are in ``gateway.core.commands``. A command is judged in two steps:

- on arrival (``submit``, without waiting for anything): topic, payload, allow-lists, type
  and range, duplicate id, the rate limit and room in the queue. A refusal is answered at
  once, so a flood of bad commands never delays good ones.
- just before its WinCC request would go out: its age by the MQTT 5 expiry, by
  ``commands.max_wait`` and by its ``ts``, all counted from arrival, and WinCC's state.

Commands for different targets run concurrently, up to ``PARALLEL``; those for the same
tag or alarm run in arrival order. A request sent to WinCC is always awaited to its end
(bounded by the WinCC timeout), audited, and its id recorded; answers wait in an outbox
(``gateway.answers``) that survives a lost broker connection and goes out on the next one.
A format without replies (Sparkplug) gets none: its refusals are logged once per reason.
The value read back after a write is published as a sample of the tag.

One message may carry several commands (a Sparkplug DCMD, one write per metric): each
is judged, queued and audited on its own. A ``control`` command is for the output format
itself (a Sparkplug rebirth): it is rate limited and audited, never sent to WinCC, and
the messages the format answers it with are published ahead of the buffered data.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import orjson

from gateway.answers import Answer, AnswerOutbox, AnswerSink, valid_response_topic
from gateway.buffer.store import Message
from gateway.core.commands import CommandPolicy, Inbound
from gateway.core.models import Reading, TagType, Value
from gateway.core.timestamps import now_ms
from gateway.core.topics import TopicMap, escape_level
from gateway.errors import (
    CommandRejected,
    WinCCError,
    WinCCNoAnswer,
    wincc_reason,
)
from gateway.formats.base import CommandKind, CommandLayout, RouteKind
from gateway.recent import RecentCommands
from gateway.wincc.base import WinCCClient

log = logging.getLogger(__name__)
audit = logging.getLogger("gateway.audit")

PARALLEL = 4
"""Commands for different targets that may be in flight to WinCC at once."""
MAX_WAITING = 100
"""Commands accepted and waiting for their turn; one more is refused ``busy`` at once."""
MAX_REASONS_LOGGED = 100
"""Refusal reasons logged once each when commands get no answer; further ones are only
audited and counted."""


@dataclass(slots=True)
class Accepted:
    """A command that passed every check on arrival and waits for its turn."""

    inbound: Inbound
    kind: CommandKind
    target: str
    request_id: str | None
    ts_ms: int | None = None
    value: Value = None
    comment: str | None = None


class CommandService:
    """Validates, queues, executes and answers commands; owns its workers and outbox."""

    def __init__(
        self,
        *,
        layout: CommandLayout,
        policy: CommandPolicy,
        client: WinCCClient,
        tag_types: dict[str, TagType],
        topic_map: TopicMap,
        known_alarms: Callable[[], dict[str, Any]],
        source_down: Callable[[], bool],
        ready: Callable[[], bool],
        answer: AnswerSink,
        connected: asyncio.Event,
        publish_own: Callable[[list[Message]], None],
        read_back: Callable[[Reading], Awaitable[None]],
    ) -> None:
        self._layout = layout
        self.policy = policy
        self._client = client
        self._tag_types = tag_types
        self._topic_map = topic_map
        self._known_alarms = known_alarms
        self._source_down = source_down
        self._ready = ready
        self._publish_own = publish_own  # a control's messages, ahead of buffered data
        self._read_back = read_back  # a value read back after a write, as a sample
        self._reasons_logged: set[str] = set()
        self.results: dict[str, int] = {}
        self.recent = RecentCommands()  # for the status page
        self._lanes: dict[tuple[CommandKind, str], deque[Accepted]] = {}
        self._turns: asyncio.Queue[tuple[CommandKind, str] | None] = asyncio.Queue()
        self._waiting = 0
        self._closing = False
        self._outbox = AnswerOutbox(answer, connected)

    # --- arrival -------------------------------------------------------------------------

    def submit(self, inbound: Inbound) -> None:
        """Take a command off the wire: queue it for its turn, or refuse and answer it now.

        Never waits, so the broker connection keeps being read while WinCC is slow.
        """
        route = self._layout.route(inbound.topic)
        if route is None:
            return
        try:
            parts = self._layout.split(route, inbound.payload)
        except CommandRejected as exc:
            request_id = self._layout.request_id(inbound.payload)
            self._finish(route.kind, None, inbound, request_id=request_id, error=str(exc))
            return
        for part, payload in parts:
            one = inbound if payload is inbound.payload else replace(inbound, payload=payload)
            if part.kind == "control":
                self._control(part.target, one)
            else:
                self._accept(part.kind, part.target, one)

    def _control(self, target: str, inbound: Inbound) -> None:
        """Carry out a control of the format now: it never waits for WinCC."""
        try:
            messages = self._controlled(target, inbound)
        except CommandRejected as exc:
            self._finish("control", target, inbound, request_id=None, error=str(exc))
            return
        self._publish_own(messages)
        self._finish("control", target, inbound, request_id=None, error=None)

    def _controlled(self, target: str, inbound: Inbound) -> list[Message]:
        if self._closing:
            raise CommandRejected("not executed: the gateway is stopping")
        self.policy.take_rate(inbound.arrival.monotonic)
        return self._layout.control(target, inbound.payload)

    def _accept(self, kind: CommandKind, target: str, inbound: Inbound) -> None:
        """Queue a command for WinCC, or refuse and answer it now."""
        try:
            command = self._admit(kind, target, inbound)
        except CommandRejected as exc:
            named = self._topic_map.tag(target) if kind == "tag" else target
            self._finish(
                kind,
                named,
                inbound,
                request_id=self._layout.request_id(inbound.payload),
                error=str(exc),
            )
            return
        key = (kind, command.target)
        lane = self._lanes.get(key)
        if lane is None:
            self._lanes[key] = deque([command])
            self._turns.put_nowait(key)
        else:  # a command for this target waits or runs: this one follows it
            lane.append(command)
        self._waiting += 1

    def _admit(self, kind: CommandKind, target: str, inbound: Inbound) -> Accepted:
        """Every check that needs no WinCC and no waiting, in the order a sender can fix."""
        if self._closing:
            raise CommandRejected("not executed: the gateway is stopping")
        if not self._ready():
            raise CommandRejected(
                "not ready: the gateway is still resolving its tags; try again shortly"
            )
        if inbound.response_topic is not None and self._layout.owns(inbound.response_topic):
            raise CommandRejected(
                "refused: the response topic is one of the gateway's own topics; "
                f"answers to it go to {self._layout.result_topic}"
            )
        command = (
            self._write_command(target, inbound)
            if kind == "tag"
            else self._ack_command(target, inbound)
        )
        if self._waiting >= MAX_WAITING:
            raise CommandRejected(
                f"busy: {MAX_WAITING} commands are waiting for WinCC; not executed"
            )
        self.policy.claim(command.request_id)
        try:
            self.policy.take_rate(inbound.arrival.monotonic)
        except CommandRejected:
            self.policy.release(command.request_id, reached_wincc=False, now=time.monotonic())
            raise
        return command

    def _write_command(self, target: str, inbound: Inbound) -> Accepted:
        tag = self._topic_map.tag(target)
        if tag is None or tag not in self._tag_types:
            raise CommandRejected("unknown tag")
        request = self._layout.parse_write(inbound.payload)
        value = self.policy.check_write(tag, self._tag_types[tag], request.value)
        return Accepted(inbound, "tag", tag, request.request_id, request.ts_ms, value=value)

    def _ack_command(self, target: str, inbound: Inbound) -> Accepted:
        if not target or "/" in target:
            raise CommandRejected("the alarm id is exactly one topic level")
        by_level = {escape_level(alarm_id): alarm_id for alarm_id in self._known_alarms()}
        alarm_id = by_level.get(target, target)
        request = self._layout.parse_ack(inbound.payload)
        self.policy.check_ack(alarm_id)
        return Accepted(inbound, "alarm", alarm_id, request.request_id, comment=request.comment)

    # --- execution -----------------------------------------------------------------------

    async def run(self) -> None:
        """The workers and the answer sender, until ``close()`` and the last answer."""
        async with asyncio.TaskGroup() as group:
            sender = group.create_task(self._outbox.run(), name="command-answers")
            workers = [
                group.create_task(self._work(), name=f"command-{n}") for n in range(PARALLEL)
            ]
            await asyncio.wait(workers)
            self._outbox.finish()
            await sender

    def close(self) -> None:
        """Stop: waiting commands are refused, those in flight finish, answers go out."""
        if self._closing:
            return
        self._closing = True
        for lane in self._lanes.values():  # a worker's own command is no longer in its lane
            while lane:
                self._waiting -= 1
                self._refuse(lane.popleft(), "not executed: the gateway is stopping")
        for _ in range(PARALLEL):
            self._turns.put_nowait(None)

    async def _work(self) -> None:
        """Take the next target with commands waiting, run its oldest, hand the rest on."""
        while True:
            key = await self._turns.get()
            if key is None:
                return
            lane = self._lanes.get(key)
            if not lane:
                self._lanes.pop(key, None)
                continue
            command = lane.popleft()
            self._waiting -= 1
            await self._execute(command)
            if lane:
                self._turns.put_nowait(key)
            else:
                del self._lanes[key]

    async def _execute(self, command: Accepted) -> None:
        """Run one command to its end and answer it; a request sent is always awaited."""
        try:
            self._check_due(command)
        except CommandRejected as exc:
            self._refuse(command, str(exc))
            return
        reached = True  # unless shown otherwise, the request may have reached WinCC
        error: str | None = None
        result: dict[str, Any] = {}
        try:
            if command.kind == "tag":
                result = await self._write(command)
            else:
                await self._acknowledge(command)
        except _NotSent as exc:
            reached, error = False, str(exc)
        except CommandRejected as exc:
            error = str(exc)
        except Exception:
            log.exception("command on %s failed unexpectedly", command.inbound.topic[:200])
            error = "internal error: the outcome is unknown; read the tag before sending again"
        self.policy.release(command.request_id, reached_wincc=reached, now=time.monotonic())
        self._finish(
            command.kind,
            command.target,
            command.inbound,
            request_id=command.request_id,
            error=error,
            result=result,
            reached=reached,
        )

    def _check_due(self, command: Accepted) -> None:
        """The checks made as the request is about to go out; time counts from arrival."""
        if self._closing:
            raise CommandRejected("not executed: the gateway is stopping")
        self.policy.check_sent_in_time(
            command.ts_ms, command.inbound.arrival, time.monotonic(), now_ms()
        )
        if command.kind == "tag":  # the rules may have been reloaded while it waited
            self.policy.check_write(command.target, self._tag_types[command.target], command.value)
        else:
            self.policy.check_ack(command.target)
        if self._source_down():
            raise CommandRejected("WinCC is unavailable; the command was not executed")

    async def _write(self, command: Accepted) -> dict[str, Any]:
        tag = command.target
        try:
            written = await self._client.write(tag, command.value)
        except WinCCNoAnswer as exc:
            raise CommandRejected(
                f"outcome unknown: {exc}; the write may have taken effect, "
                "read the tag before sending it again"
            ) from exc
        except WinCCError as exc:
            raise _NotSent(wincc_reason(exc, "tag")) from exc
        try:
            reading = await self._client.read(tag)
        except WinCCError as exc:
            log.warning("read-back of %s after a write failed: %s", tag, exc)
            return {"value": written.value}
        await self._read_back(reading)
        return {"value": reading.value}

    async def _acknowledge(self, command: Accepted) -> None:
        try:
            await self._client.acknowledge(command.target, command.comment)
        except WinCCNoAnswer as exc:
            raise CommandRejected(
                f"outcome unknown: {exc}; the alarm may have been acknowledged"
            ) from exc
        except WinCCError as exc:
            raise _NotSent(wincc_reason(exc, "alarm")) from exc

    def _refuse(self, command: Accepted, error: str) -> None:
        """Answer a command that never reached WinCC."""
        self.policy.release(command.request_id, reached_wincc=False, now=time.monotonic())
        self._finish(
            command.kind,
            command.target,
            command.inbound,
            request_id=command.request_id,
            error=error,
        )

    # --- answers -------------------------------------------------------------------------

    def _finish(
        self,
        kind: RouteKind,
        target: str | None,
        inbound: Inbound,
        *,
        request_id: str | None,
        error: str | None,
        result: dict[str, Any] | None = None,
        reached: bool = False,
    ) -> None:
        """Count, audit and queue the one answer of a command.

        ``reached``: the request went out to WinCC, so a failure leaves its outcome
        unknown (``unknown``), not refused.
        """
        body: dict[str, Any] = {"id": request_id, "ok": error is None, "error": error, kind: target}
        if kind == "tag":
            body["value"] = None
        if result:
            body.update(result)
        outcome = "ok" if error is None else "unknown" if reached else "refused"
        self._count(outcome)
        shown = target or inbound.topic[:200]
        self.recent.add(
            kind=kind,
            target=shown,
            request_id=request_id,
            sender=inbound.sender,
            outcome=outcome,
            error=error,
        )
        audit.info(
            "command %s %s=%r id=%r claimed_client_id=%r value=%r -> %s",
            {"tag": "write", "alarm": "ack", "control": "control"}[kind],
            kind,
            shown,
            request_id,
            inbound.sender,
            _short(body.get("value")),
            outcome if error is None else f"{outcome}: {error}",
        )
        if self._layout.answers:
            self._outbox.put(self._answer_for(inbound, orjson.dumps(body), outcome))
        elif error is not None:
            self._unanswered(inbound, outcome, error)

    def _unanswered(self, inbound: Inbound, outcome: str, error: str) -> None:
        """Log a failed command nobody is answered about, once per reason (the audit line
        has every one, the counters count them)."""
        if error in self._reasons_logged or len(self._reasons_logged) >= MAX_REASONS_LOGGED:
            return
        self._reasons_logged.add(error)
        log.warning(
            "command on %s %s: %s (logged once; every one is audited and counted)",
            inbound.topic[:200],
            outcome,
            error,
        )

    def _answer_for(self, inbound: Inbound, payload: bytes, outcome: str) -> Answer:
        """The answer goes where the protocol says (an Azure direct method's response),
        else to the MQTT 5 response topic when valid and not one of the gateway's own,
        else to ``P/cmd/result``."""
        fixed = self._layout.reply_to(inbound.topic, outcome)
        if fixed is not None:
            return Answer(fixed, payload, None)
        topic = inbound.response_topic
        if topic is None or not valid_response_topic(topic) or self._layout.owns(topic):
            topic = self._layout.result_topic
        return Answer(topic, payload, inbound.correlation_data)

    def internal_error(self, inbound: Inbound) -> None:
        """Answer a command whose handling failed on a fault of the gateway itself."""
        body = {
            "id": self._layout.request_id(inbound.payload),
            "ok": False,
            "error": "internal error",
        }
        self._count("refused")
        if self._layout.answers:
            self._outbox.put(self._answer_for(inbound, orjson.dumps(body), "refused"))

    def _count(self, result: str) -> None:
        self.results[result] = self.results.get(result, 0) + 1


class _NotSent(CommandRejected):
    """Refused before the request reached WinCC: the command was not executed."""


def _short(value: Any) -> Any:
    if isinstance(value, str) and len(value) > 80:
        return value[:80] + "..."
    return value
