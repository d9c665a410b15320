"""MQTT commands in, tag writes and alarm acknowledgements out, every one answered.

The decisions are in ``gateway.core.commands``; this module parses the topic, runs the
checks in order, executes through the WinCC client, reads the written tag back, answers
on the MQTT 5 response topic (correlation data echoed) or ``P/cmd/result``, and writes
one audit line per command.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.core.commands import CommandPolicy, parse_ack, parse_write, request_id_of
from gateway.core.timestamps import now_ms
from gateway.core.topics import TopicMap, escape_level
from gateway.errors import (
    CommandRejected,
    WinCCError,
    WinCCNotFound,
    WinCCRejected,
    WinCCTimeout,
    WinCCUnavailable,
    WinCCUnsupported,
)
from gateway.wincc.base import WinCCClient
from gateway.wincc.models import TagType

log = logging.getLogger(__name__)
audit = logging.getLogger("gateway.audit")

MAX_TOPIC_BYTES = 65535


@dataclass(slots=True, frozen=True)
class Inbound:
    """A command as it came off the wire, with the MQTT 5 properties that matter."""

    topic: str
    payload: bytes
    response_topic: str | None = None
    correlation_data: bytes | None = None
    expires_at_ms: int | None = None
    sender: str | None = None


@dataclass(slots=True, frozen=True)
class Answer:
    """Where and what to answer."""

    topic: str
    payload: bytes
    correlation_data: bytes | None


AnswerSink = Callable[[Answer], Awaitable[None]]


def valid_response_topic(topic: str | None) -> bool:
    """A topic the gateway may publish an answer to: no wildcards, no NUL, not too long."""
    return bool(
        topic
        and "+" not in topic
        and "#" not in topic
        and "\x00" not in topic
        and len(topic.encode("utf-8", "surrogatepass")) <= MAX_TOPIC_BYTES
    )


def inbound_from(topic: str, payload: bytes, properties: Any) -> Inbound:
    """The command and its MQTT 5 properties (response topic, correlation, expiry, sender)."""
    if properties is None:
        return Inbound(topic, payload)
    expiry = getattr(properties, "MessageExpiryInterval", None)
    user = dict(getattr(properties, "UserProperty", None) or [])
    return Inbound(
        topic,
        payload,
        response_topic=getattr(properties, "ResponseTopic", None),
        correlation_data=getattr(properties, "CorrelationData", None),
        expires_at_ms=now_ms() + int(expiry) * 1000 if expiry is not None else None,
        sender=user.get("client_id") or user.get("clientid"),
    )


def internal_error_answer(service: CommandService, inbound: Inbound) -> Answer:
    """The answer to a command whose handling failed on a fault of the gateway itself."""
    body = {"id": request_id_of(inbound.payload), "ok": False, "error": "internal error"}
    return service.answer_for(inbound, orjson.dumps(body))


class CommandService:
    """Validates, executes and answers commands, one at a time, in arrival order."""

    def __init__(
        self,
        *,
        prefix: str,
        policy: CommandPolicy,
        client: WinCCClient,
        tag_types: dict[str, TagType],
        topic_map: TopicMap,
        known_alarms: Callable[[], dict[str, Any]],
        source_down: Callable[[], bool],
        answer: AnswerSink,
    ) -> None:
        self._write_prefix = f"{prefix}/cmd/write/"
        self._ack_prefix = f"{prefix}/cmd/ack/"
        self._result_topic = f"{prefix}/cmd/result"
        self.policy = policy
        self._client = client
        self._tag_types = tag_types
        self._topic_map = topic_map
        self._known_alarms = known_alarms
        self._source_down = source_down
        self._answer = answer
        self.results: dict[str, int] = {}

    @property
    def subscriptions(self) -> tuple[str, str]:
        """The command topics to subscribe to."""
        return (self._write_prefix + "#", self._ack_prefix + "#")

    async def handle(self, inbound: Inbound) -> None:
        """Answer one command; never raises for anything a sender can put in a message."""
        if inbound.topic.startswith(self._write_prefix):
            kind, target = "tag", inbound.topic[len(self._write_prefix) :]
            run = self._write
        elif inbound.topic.startswith(self._ack_prefix):
            kind, target = "alarm", inbound.topic[len(self._ack_prefix) :]
            run = self._ack
        else:
            return
        request_id = request_id_of(inbound.payload)
        body: dict[str, Any] = {"id": request_id, "ok": False, "error": None, kind: None}
        if kind == "tag":
            body["value"] = None
        try:
            body.update(await run(target, inbound))
            body["ok"] = True
        except CommandRejected as exc:
            body["error"] = str(exc)
            body[kind] = self._topic_map.tag(target) if kind == "tag" else target
        self._count("ok" if body["ok"] else "refused")
        audit.info(
            "command %s %s=%r id=%r from=%r value=%r -> %s",
            "write" if kind == "tag" else "ack",
            kind,
            body.get(kind) or target[:200],
            request_id,
            inbound.sender or request_id,
            _short(body.get("value")),
            "ok" if body["ok"] else f"refused: {body['error']}",
        )
        await self._send(inbound, body)

    async def _write(self, target: str, inbound: Inbound) -> dict[str, Any]:
        tag = self._topic_map.tag(target)
        if tag is None or tag not in self._tag_types:
            raise CommandRejected("unknown tag")
        request = parse_write(inbound.payload)
        policy = self.policy
        value = policy.check_write(tag, self._tag_types[tag], request.value)
        policy.check_fresh(request.ts_ms, inbound.expires_at_ms, now_ms())
        policy.check_new(request.request_id)
        self._check_source()
        policy.take_rate(time.monotonic())
        try:
            written = await self._client.write(tag, value)
        except WinCCTimeout as exc:
            policy.executed(request.request_id, time.monotonic())
            raise CommandRejected(
                "WinCC did not answer in time: the write may have taken effect; "
                "read the tag before sending it again"
            ) from exc
        except WinCCError as exc:
            raise CommandRejected(_wincc_reason(exc, "tag")) from exc
        policy.executed(request.request_id, time.monotonic())
        try:
            value = (await self._client.read(tag)).value
        except WinCCError as exc:
            log.warning("read-back of %s after a write failed: %s", tag, exc)
            value = written.value
        return {"tag": tag, "value": value}

    async def _ack(self, target: str, inbound: Inbound) -> dict[str, Any]:
        if not target or "/" in target:
            raise CommandRejected("the alarm id is exactly one topic level")
        by_level = {escape_level(alarm_id): alarm_id for alarm_id in self._known_alarms()}
        alarm_id = by_level.get(target, target)
        request = parse_ack(inbound.payload)
        self.policy.check_new(request.request_id)
        self._check_source()
        self.policy.take_rate(time.monotonic())
        try:
            await self._client.acknowledge(alarm_id, request.comment)
        except WinCCError as exc:
            raise CommandRejected(_wincc_reason(exc, "alarm")) from exc
        self.policy.executed(request.request_id, time.monotonic())
        return {"alarm": alarm_id}

    def _check_source(self) -> None:
        if self._source_down():
            raise CommandRejected("WinCC is unavailable; the command was not executed")

    async def _send(self, inbound: Inbound, body: dict[str, Any]) -> None:
        await self._answer(self.answer_for(inbound, orjson.dumps(body)))

    def answer_for(self, inbound: Inbound, payload: bytes) -> Answer:
        """The answer goes to the MQTT 5 response topic when valid, else ``P/cmd/result``."""
        topic = inbound.response_topic
        if topic is None or not valid_response_topic(topic):
            topic = self._result_topic
        return Answer(topic, payload, inbound.correlation_data)

    def _count(self, result: str) -> None:
        self.results[result] = self.results.get(result, 0) + 1


def _wincc_reason(exc: WinCCError, kind: str) -> str:
    if isinstance(exc, WinCCUnsupported):
        return str(exc)
    if isinstance(exc, WinCCNotFound):
        return f"unknown {kind} on the WinCC server"
    if isinstance(exc, WinCCRejected):
        status = "" if exc.status is None else f" ({exc.status})"
        return f"WinCC refused it{status}: {exc}"
    if isinstance(exc, WinCCUnavailable):
        return f"WinCC unavailable, not executed: {exc}"
    return f"WinCC error: {exc}"


def _short(value: Any) -> Any:
    if isinstance(value, str) and len(value) > 80:
        return value[:80] + "..."
    return value
