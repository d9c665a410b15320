"""Whether an MQTT command may touch the plant: parsing and every refusal rule, no I/O.

A write from MQTT moves a valve or a setpoint, so everything here refuses by default: a
command is allowed only when its JSON is well formed and small, its topic maps to a known
tag, the tag is on the allow-list, the value's type and range fit, its id is new, the rate
limit has room when it arrives, and it is still in time when its request would go out.
Each refusal is a ``CommandRejected`` whose text is the answer's ``error``.

Time is judged from the command's arrival at the gateway, never from when it is taken up:
a command that waited is judged by how long it waited.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.core.globs import Glob, any_matches
from gateway.core.models import TagType, Value
from gateway.core.timestamps import parse_ts
from gateway.errors import CommandRejected

MAX_PAYLOAD = 64 * 1024
MAX_ID_LENGTH = 256
MAX_STRING_VALUE = 4096
INT_RANGE = (-(2**63), 2**63 - 1)


@dataclass(slots=True, frozen=True)
class WriteRequest:
    """A parsed write command."""

    value: Any
    request_id: str | None
    ts_ms: int | None


@dataclass(slots=True, frozen=True)
class AckRequest:
    """A parsed acknowledge command."""

    request_id: str | None
    comment: str | None


@dataclass(slots=True, frozen=True)
class Arrival:
    """When a command reached the gateway, by the monotonic clock (seconds) and the wall
    clock (epoch ms), with the MQTT 5 message expiry interval it came with."""

    monotonic: float
    wall_ms: int
    expiry_s: int | None = None


@dataclass(slots=True, frozen=True)
class Inbound:
    """A command as it came off the wire: plain values, whatever the MQTT library, with
    the MQTT 5 properties that matter (the sender's claimed client id among them)."""

    topic: str
    payload: bytes
    arrival: Arrival
    response_topic: str | None = None
    correlation_data: bytes | None = None
    sender: str | None = None


@dataclass(slots=True, frozen=True)
class Range:
    """Allowed values of the tags a glob matches (either bound may be open)."""

    pattern: str
    min: float | None
    max: float | None


def _load(payload: bytes) -> Any:
    if len(payload) > MAX_PAYLOAD:
        raise CommandRejected(f"payload too large ({len(payload)} bytes, at most {MAX_PAYLOAD})")
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise CommandRejected(f"malformed JSON: {exc.msg}") from exc


def _request_id(body: dict[str, Any]) -> str | None:
    request_id = body.get("id")
    if request_id is None:
        return None
    if not isinstance(request_id, str) or not request_id or len(request_id) > MAX_ID_LENGTH:
        raise CommandRejected(f"id must be a non-empty string of at most {MAX_ID_LENGTH} chars")
    return request_id


def _timestamp(body: dict[str, Any]) -> int | None:
    ts = body.get("ts")
    if ts is None:
        return None
    if not isinstance(ts, str):
        raise CommandRejected("ts must be an ISO 8601 timestamp string")
    try:
        return parse_ts(ts)
    except ValueError as exc:
        raise CommandRejected(f"ts is not an ISO 8601 timestamp: {ts[:40]!r}") from exc


def request_id_of(payload: bytes) -> str | None:
    """The ``id`` of a command for the answer, even when the command itself is refused."""
    if len(payload) > MAX_PAYLOAD:
        return None
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if isinstance(body, dict):
        request_id = body.get("id")
        if isinstance(request_id, str) and 0 < len(request_id) <= MAX_ID_LENGTH:
            return request_id
    return None


def parse_write(payload: bytes) -> WriteRequest:
    """``{"value": V, "id": "...", "ts": TS}`` or a bare JSON value."""
    body = _load(payload)
    if not isinstance(body, dict):
        return WriteRequest(body, None, None)
    unknown = sorted(set(body) - {"value", "id", "ts"})
    if unknown:
        raise CommandRejected(f"unknown field(s) {', '.join(map(repr, unknown))[:200]}")
    if "value" not in body:
        raise CommandRejected('missing "value"')
    return WriteRequest(body["value"], _request_id(body), _timestamp(body))


def parse_ack(payload: bytes) -> AckRequest:
    """``{"id": "...", "comment": "..."}``, or an empty payload."""
    if not payload.strip():
        return AckRequest(None, None)
    body = _load(payload)
    if not isinstance(body, dict):
        raise CommandRejected('an acknowledge is empty or {"id": "...", "comment": "..."}')
    unknown = sorted(set(body) - {"id", "comment", "ts"})
    if unknown:
        raise CommandRejected(f"unknown field(s) {', '.join(map(repr, unknown))[:200]}")
    comment = body.get("comment")
    if comment is not None and (not isinstance(comment, str) or len(comment) > MAX_STRING_VALUE):
        raise CommandRejected(f"comment must be a string of at most {MAX_STRING_VALUE} chars")
    return AckRequest(_request_id(body), comment)


def fit_value(value: object, tag_type: TagType) -> Value:
    """The value if it fits the tag's type exactly; no silent conversion ever."""
    if tag_type is TagType.BOOL:
        if isinstance(value, bool):
            return value
        raise CommandRejected(f"a bool tag takes true or false, not {_kind(value)}")
    if tag_type is TagType.STRING:
        if isinstance(value, str) and len(value) <= MAX_STRING_VALUE:
            return value
        raise CommandRejected(
            f"a string tag takes a string of at most {MAX_STRING_VALUE} chars, not {_kind(value)}"
        )
    if tag_type is TagType.UNKNOWN:
        raise CommandRejected(
            "the tag's type is unknown to the gateway, so it cannot be written from MQTT"
        )
    if tag_type not in (TagType.FLOAT, TagType.INT):
        raise CommandRejected(f"tags of type {tag_type.value!r} cannot be written from MQTT")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CommandRejected(f"a {tag_type.value} tag takes a number, not {_kind(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise CommandRejected("NaN and infinity are not values a tag can take")
    if tag_type is TagType.INT:
        if not isinstance(value, int):
            raise CommandRejected(f"an int tag takes a whole number, not {value!r}")
        if not INT_RANGE[0] <= value <= INT_RANGE[1]:
            raise CommandRejected("the number is out of the range of an int tag")
    return value


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a bool"
    if isinstance(value, str):
        return "a string" if len(value) <= MAX_STRING_VALUE else "a string that long"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "a list"
    return "an object"


class RecentIds:
    """Request ids already executed, remembered for ``window`` seconds (bounded)."""

    def __init__(self, window: float, limit: int = 100_000) -> None:
        self._window = window
        self._limit = limit
        self._seen: OrderedDict[str, float] = OrderedDict()

    def __contains__(self, request_id: str) -> bool:
        return request_id in self._seen

    def add(self, request_id: str, now: float) -> None:
        """Remember an id; forget those older than the window or beyond the limit."""
        self._seen[request_id] = now
        self._seen.move_to_end(request_id)
        while self._seen:
            oldest_id, oldest = next(iter(self._seen.items()))
            if now - oldest <= self._window and len(self._seen) <= self._limit:
                break
            del self._seen[oldest_id]


class RateLimit:
    """Token bucket: ``rate`` commands a second on average, ``burst`` at once."""

    def __init__(self, rate: float, burst: int) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._last: float | None = None

    def allow(self, now: float) -> bool:
        """Take a token if there is one."""
        if self._last is not None:
            self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class CommandPolicy:
    """The allow-lists, the tags' types and ranges, timing, duplicates and the rate."""

    def __init__(
        self,
        *,
        writable: list[str],
        acknowledge: list[str],
        ranges: list[Range],
        max_age: float,
        max_wait: float,
        rate: float,
        burst: int,
    ) -> None:
        self._recent = RecentIds(window=max(600.0, 2 * max_age))
        self._open: set[str] = set()
        self.reconfigure(
            writable=writable,
            acknowledge=acknowledge,
            ranges=ranges,
            max_age=max_age,
            max_wait=max_wait,
            rate=rate,
            burst=burst,
        )

    def reconfigure(
        self,
        *,
        writable: list[str],
        acknowledge: list[str],
        ranges: list[Range],
        max_age: float,
        max_wait: float,
        rate: float,
        burst: int,
    ) -> None:
        """Apply new rules (config reload); the ids already executed stay remembered."""
        self._writable = [Glob(pattern) for pattern in writable]
        self._acknowledge = [Glob(pattern) for pattern in acknowledge]
        self._ranges = [(Glob(limit.pattern), limit) for limit in ranges]
        self._max_age_ms = int(max_age * 1000)
        self._max_wait = max_wait
        self._rate = RateLimit(rate, burst)

    def may_write(self, tag: str) -> bool:
        """Whether the allow-list admits the tag (empty list: nothing is writable)."""
        return any_matches(self._writable, tag)

    def check_ack(self, alarm_id: str) -> None:
        """Refuse an alarm that ``commands.acknowledge`` does not admit (empty: none)."""
        if not any_matches(self._acknowledge, alarm_id):
            raise CommandRejected("alarm is not in commands.acknowledge")

    def check_sent_in_time(
        self, ts_ms: int | None, arrival: Arrival, now: float, now_ms: int
    ) -> None:
        """Refuse, just before its request would go out, a command that is past its MQTT 5
        expiry or ``commands.max_wait`` (both counted from arrival), or older than
        ``commands.max_age`` by its ``ts``; whichever comes first."""
        waited = now - arrival.monotonic
        if arrival.expiry_s is not None and waited > arrival.expiry_s:
            raise CommandRejected(
                f"expired: its MQTT message expiry of {arrival.expiry_s} s passed "
                f"after {waited:.1f} s at the gateway; not executed"
            )
        if waited > self._max_wait:
            raise CommandRejected(
                f"expired: waited {waited:.1f} s at the gateway, longer than "
                f"commands.max_wait; not executed"
            )
        if ts_ms is None:
            return
        if now_ms - ts_ms > self._max_age_ms:
            raise CommandRejected(
                f"expired: command too old ({(now_ms - ts_ms) / 1000:.1f} s > "
                "commands.max_age); not executed"
            )
        if ts_ms - now_ms > self._max_age_ms:
            raise CommandRejected("command ts is in the future; check the sender's clock")

    def claim(self, request_id: str | None) -> None:
        """Refuse an id already executed or still on its way; else hold it until
        ``release``, so that a copy arriving meanwhile is refused too."""
        if request_id is None:
            return
        if request_id in self._recent:
            raise CommandRejected(f"duplicate request id {request_id!r}: already executed")
        if request_id in self._open:
            raise CommandRejected(
                f"duplicate request id {request_id!r}: the first is still being executed"
            )
        self._open.add(request_id)

    def release(self, request_id: str | None, *, reached_wincc: bool, now: float) -> None:
        """The command with this id is done; if its request reached WinCC (or may have),
        the id is remembered as executed."""
        if request_id is None:
            return
        self._open.discard(request_id)
        if reached_wincc:
            self._recent.add(request_id, now)

    def check_write(self, tag: str, tag_type: TagType, value: Any) -> Value:
        """The value to write, if the tag is writable and the value fits type and range."""
        if not self.may_write(tag):
            raise CommandRejected("tag is not in commands.writable")
        fitted = fit_value(value, tag_type)
        if isinstance(fitted, int | float) and not isinstance(fitted, bool):
            for glob, limit in self._ranges:
                if glob.matches(tag):
                    if limit.min is not None and fitted < limit.min:
                        raise CommandRejected(f"value below the allowed minimum {limit.min:g}")
                    if limit.max is not None and fitted > limit.max:
                        raise CommandRejected(f"value above the allowed maximum {limit.max:g}")
        return fitted

    def take_rate(self, now: float) -> None:
        """Refuse when commands arrive faster than the rate limit allows."""
        if not self._rate.allow(now):
            raise CommandRejected("rate limit exceeded; try again shortly")
