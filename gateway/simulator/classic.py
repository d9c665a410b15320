"""The classic WinCC REST service (V7.5 SP2, V8) served in front of the simulator's plant.

One route under ``/WinCCRestService`` dispatches by path, ignoring case as real servers do
(``tagManagement`` and ``TagManagement`` alike), and checks HTTP Basic auth on every
request; the simulator's middleware injects the same faults as for the ``rest`` API.
``ClassicVariant`` switches between the answer shapes real servers were seen to send, so
tests can hold the client to each of them.

The error codes in answers (``errorcode``) are the simulator's own: real servers'
codes are not documented publicly, and the client relies only on "0 is success".
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import orjson
from aiohttp import web

from gateway.core.models import Alarm, TagType
from gateway.core.timestamps import format_ts, parse_ts
from gateway.simulator.plant import ReadOnlyError, TypeMismatchError, UnknownTagError

if TYPE_CHECKING:
    from gateway.simulator.server import Simulator

BASE_PATH = "/WinCCRestService"
ALARM_FILTER = "GatewayAlarms"
"""The one REST filter of the simulated project: its message list holds the active alarms."""
ARCHIVE = "ProcessValueArchive"
"""The process value archive every simulated tag is logged in."""
PAGE_DEFAULT = 1000
PAGE_MAX = 10_000
HISTORY_MAX = 10_000

UNKNOWN_VARIABLE = 1
TYPE_MISMATCH = 2
READ_ONLY = 3
UNKNOWN_ARCHIVE = 4

DATA_TYPE_CODES = {TagType.BOOL: 1, TagType.INT: 6, TagType.FLOAT: 9, TagType.STRING: 11}
"""WinCC data type codes of the plant's tags: binary, signed 32-bit, 64-bit floating point,
16-bit character text."""

CAME, WENT, ACKNOWLEDGED = 0x01, 0x02, 0x03
"""Message states as WinCC numbers them."""

GERMAN = {
    "High level": "Füllstand hoch",
    "Low level": "Füllstand niedrig",
    "High temperature": "Temperatur hoch",
    "Overspeed": "Überdrehzahl",
}
"""Alarm texts in the project's second language, chosen with ``Accept-Language: de``."""

_Handler = Callable[[web.Request, list[str]], Awaitable[web.Response]]


def is_classic_path(path: str) -> bool:
    """Whether ``path`` is under the REST service's base path, in any case."""
    return path.lower().startswith(BASE_PATH.lower() + "/")


@dataclass(slots=True)
class ClassicVariant:
    """Which of the shapes seen from real servers the simulator answers with."""

    quality_key: str = "qualitycode"
    """``qualitycode`` or ``qualityCode``."""
    wrapped: bool = False
    """Lists of values and messages as ``{"values": [...]}`` rather than a bare array."""
    empty_for_invalid: bool = False
    """Answer 200 with an empty body when a name is invalid, instead of an item error."""
    archive_list: bool = True
    """Serve ``tagLogging/Variables``; without it, clients need a default archive name."""


class _Refused(Exception):
    """Ends a request with ``{"error": message}`` and the status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _json(data: object) -> web.Response:
    return web.Response(body=orjson.dumps(data), content_type="application/json")


def _empty() -> web.Response:
    return web.Response(status=200)


def _failure(name: object, code: int, message: str, quality_key: str) -> dict[str, object]:
    return {
        "variableName": name,
        "dataType": 0,
        "value": None,
        "timestamp": None,
        quality_key: 0,
        "errorcode": code,
        "error": message,
    }


async def _body(request: web.Request) -> Any:
    try:
        return orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise _Refused(400, f"malformed JSON: {exc}") from exc


def _page_params(request: web.Request) -> tuple[int, int]:
    """``itemLimit`` and the offset ``continuationPoint`` of a configuration list request."""
    limit_text = request.query.get("itemLimit", str(PAGE_DEFAULT))
    start_text = request.query.get("continuationPoint", "0")
    if not limit_text.isdecimal() or not 1 <= int(limit_text) <= PAGE_MAX:
        raise _Refused(400, f"itemLimit must be a whole number from 1 to {PAGE_MAX}")
    if not start_text.isdecimal() or len(start_text) > 18:
        raise _Refused(400, "bad continuationPoint")
    return int(limit_text), int(start_text)


def _paged(key: str, page: list[dict[str, object]], total: int, end: int) -> web.Response:
    """One page of a configuration list; the continuation point is the next offset."""
    return _json({key: page, "continuationPoint": end if end < total else None})


class ClassicApi:
    """The REST service's routes over the simulator's plant, counters and logs."""

    def __init__(self, simulator: Simulator) -> None:
        self._sim = simulator
        self.variant = ClassicVariant()
        self._routes: dict[tuple[str, str, str], tuple[int, _Handler]] = {
            ("POST", "tagmanagement", "values"): (0, self._read_many),
            ("GET", "tagmanagement", "value"): (1, self._read_one),
            ("PUT", "tagmanagement", "value"): (1, self._write),
            ("GET", "tagmanagement", "variables"): (0, self._variables),
            ("POST", "taglogging", "values"): (0, self._history),
            ("GET", "taglogging", "variables"): (0, self._archived),
            ("GET", "alarmlogging", "messagelist"): (1, self._message_list),
        }

    def mount(self, router: web.UrlDispatcher) -> None:
        """Add the one route that serves everything under the base path."""
        router.add_route("*", "/{base}/{tail:.+}", self._dispatch)

    async def _dispatch(self, request: web.Request) -> web.Response:
        if not is_classic_path(request.rel_url.raw_path):
            return _error(404, f"no resource {request.path}")
        try:
            self._authorize(request)
            handler, arguments = self._route(request)
            return await handler(request, arguments)
        except _Refused as exc:
            return _error(exc.status, exc.message)

    def _route(self, request: web.Request) -> tuple[_Handler, list[str]]:
        """The handler of a request and the path segments it takes (a tag or filter name).

        Segments come from the raw path, so an escaped ``/`` in a tag name stays in it.
        """
        raw = request.rel_url.raw_path
        segments = [unquote(part) for part in raw[len(BASE_PATH) + 1 :].split("/")]
        area, op = [*segments, ""][:2]
        resource = (area.lower(), op.lower())
        route = self._routes.get((request.method, *resource))
        if route is None:
            known = {(a, o) for _, a, o in self._routes}
            status = 405 if resource in known else 404
            raise _Refused(status, f"no {request.method} {request.path}")
        arguments, handler = route
        if len(segments) - 2 != arguments:
            raise _Refused(404, f"no resource {request.path}")
        return handler, segments[2:]

    def _authorize(self, request: web.Request) -> None:
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic" or not encoded:
            raise _Refused(401, "authentication required")
        try:
            user, _, password = base64.b64decode(encoded.strip(), validate=True).partition(b":")
        except binascii.Error as exc:
            raise _Refused(401, "malformed Basic credentials") from exc
        options = self._sim.options
        valid_user = hmac.compare_digest(user, options.username.encode())
        valid_password = hmac.compare_digest(password, options.password.encode())
        if not (valid_user and valid_password):
            raise _Refused(401, "invalid credentials")

    # --- tag management ------------------------------------------------------------------

    def _item(self, name: str) -> dict[str, object] | None:
        """The answer item of a tag's current value; None for an unknown name."""
        plant = self._sim.plant
        i = plant.index.get(name)
        if i is None:
            return None
        current = plant.item(i)
        return {
            "variableName": name,
            "dataType": DATA_TYPE_CODES[plant.tag_type(name)],
            "value": current["value"],
            "timestamp": current["timestamp"],
            self.variant.quality_key: current["quality"],
            "errorcode": 0,
            "error": "",
        }

    def _list(self, items: list[dict[str, object]]) -> web.Response:
        return _json({"values": items} if self.variant.wrapped else items)

    async def _read_many(self, request: web.Request, _: list[str]) -> web.Response:
        body = await _body(request)
        names = body.get("variableNames") if isinstance(body, dict) else None
        if not isinstance(names, list) or not all(type(name) is str for name in names):
            raise _Refused(400, 'expected {"variableNames": ["...", ...]}')
        items = [self._item(name) for name in names]
        self._sim.reads += 1
        if None in items and self.variant.empty_for_invalid:
            return _empty()
        key = self.variant.quality_key
        self._sim.read_items += len(items)
        return self._list(
            [
                item or _failure(name, UNKNOWN_VARIABLE, "variable not found", key)
                for name, item in zip(names, items, strict=True)
            ]
        )

    async def _read_one(self, request: web.Request, args: list[str]) -> web.Response:
        name = args[0]
        item = self._item(name)
        self._sim.reads += 1
        if item is None:
            if self.variant.empty_for_invalid:
                return _empty()
            item = _failure(name, UNKNOWN_VARIABLE, "variable not found", self.variant.quality_key)
        else:
            self._sim.read_items += 1
        return _json(item)

    async def _write(self, request: web.Request, args: list[str]) -> web.Response:
        name = args[0]
        body = await _body(request)
        if not isinstance(body, dict) or "value" not in body:
            raise _Refused(400, 'expected {"value": ...}')
        key = self.variant.quality_key
        sim = self._sim
        try:
            reading = sim.plant.write(name, body["value"], now_ms=sim.now())
        except UnknownTagError:
            if self.variant.empty_for_invalid:
                return _empty()
            return _json(_failure(name, UNKNOWN_VARIABLE, "variable not found", key))
        except ReadOnlyError as exc:
            return _json(_failure(name, READ_ONLY, str(exc), key))
        except TypeMismatchError as exc:
            return _json(_failure(name, TYPE_MISMATCH, f"type mismatch: {exc}", key))
        sim.write_log.append((name, reading.value))
        sim.writes += 1
        return _json(self._item(name))

    async def _variables(self, request: web.Request, _: list[str]) -> web.Response:
        limit, start = _page_params(request)
        plant = self._sim.plant
        items: list[dict[str, object]] = [
            {"name": name, "dataType": DATA_TYPE_CODES[plant.tag_type(name)]}
            for name in plant.names[start : start + limit]
        ]
        return _paged("variables", items, len(plant), start + limit)

    # --- tag logging ---------------------------------------------------------------------

    async def _archived(self, request: web.Request, _: list[str]) -> web.Response:
        if not self.variant.archive_list:
            raise _Refused(404, "no resource tagLogging/Variables")
        limit, start = _page_params(request)
        plant = self._sim.plant
        items: list[dict[str, object]] = [
            {"name": name, "archiveName": ARCHIVE} for name in plant.names[start : start + limit]
        ]
        return _paged("variables", items, len(plant), start + limit)

    async def _history(self, request: web.Request, _: list[str]) -> web.Response:
        body = await _body(request)
        archives = body.get("archives") if isinstance(body, dict) else None
        if not isinstance(archives, list) or not all(
            isinstance(archive, dict) and isinstance(archive.get("variables"), list)
            for archive in archives
        ):
            raise _Refused(400, 'expected {"archives": [{"name": ..., "variables": [...]}]}')
        answer = [
            {
                "name": archive.get("name"),
                "variables": [
                    self._archived_values(archive.get("name"), variable)
                    for variable in archive["variables"]
                ],
            }
            for archive in archives
        ]
        return _json(answer)

    def _archived_values(self, archive: object, variable: object) -> dict[str, object]:
        if not isinstance(variable, dict) or not isinstance(variable.get("name"), str):
            raise _Refused(400, 'every variable needs a "name"')
        name = variable["name"]
        try:
            start_ms = parse_ts(variable.get("timeFrom") or "1970-01-01T00:00:00Z")
            end_ms = parse_ts(variable["timeTo"]) if variable.get("timeTo") else self._sim.now()
        except (TypeError, ValueError) as exc:
            raise _Refused(400, f"bad timeFrom or timeTo: {exc}") from exc
        limit = variable.get("maxValues", HISTORY_MAX)
        if type(limit) is not int or not 1 <= limit <= HISTORY_MAX:
            raise _Refused(400, f"maxValues must be a whole number from 1 to {HISTORY_MAX}")
        result: dict[str, object] = {"name": name, "values": [], "errorcode": 0, "error": ""}
        if archive != ARCHIVE:
            result.update(errorcode=UNKNOWN_ARCHIVE, error=f"unknown archive {archive}")
            return result
        try:
            page, _ = self._sim.plant.history(name, start_ms=start_ms, end_ms=end_ms, limit=limit)
        except UnknownTagError:
            result.update(errorcode=UNKNOWN_VARIABLE, error=f"{name} is not archived")
            return result
        key = self.variant.quality_key
        result["values"] = [
            {"value": r.value, "timestamp": format_ts(r.ts_ms), key: r.quality} for r in page
        ]
        return result

    # --- alarm logging -------------------------------------------------------------------

    async def _message_list(self, request: web.Request, args: list[str]) -> web.Response:
        if args[0] != ALARM_FILTER:
            raise _Refused(404, f"no REST filter {args[0]!r}")
        german = request.headers.get("Accept-Language", "").lower().startswith("de")
        messages = [_message(alarm, german) for alarm in self._sim.plant.active_alarms()]
        return self._list(messages)


def _message(alarm: Alarm, german: bool) -> dict[str, object]:
    """A message as the message list shows it: its state now, and the time it got there."""
    if alarm.state == "went":
        state, at = WENT, alarm.went_at
    elif alarm.acked:
        state, at = ACKNOWLEDGED, alarm.acked_at
    else:
        state, at = CAME, alarm.came_at
    device, _, text = alarm.text.rpartition(": ")
    if german:
        text = GERMAN.get(text, text)
    return {
        "messageNumber": int(alarm.id),
        "state": state,
        "timestamp": None if at is None else format_ts(at),
        "text1": f"{device}: {text}",
        "priority": alarm.priority,
        "alarmTag": alarm.tag,
        "className": "Alarm",
    }


def _error(status: int, message: str) -> web.Response:
    response = web.Response(
        body=orjson.dumps({"error": message}), status=status, content_type="application/json"
    )
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Basic realm="WinCCRestService"'
    return response
