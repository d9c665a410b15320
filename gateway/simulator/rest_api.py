"""The simulator's ``rest`` API: login with bearer tokens, reads, writes, alarms, history
and browsing over the plant, with the shapes and errors the WinCC REST API gives."""

from __future__ import annotations

import hmac
import secrets
import time
from typing import TYPE_CHECKING

import orjson
from aiohttp import web

from gateway.core.models import Reading
from gateway.core.payloads import alarm_fields
from gateway.core.timestamps import format_ts, parse_ts
from gateway.simulator.plant import (
    ReadOnlyError,
    TypeMismatchError,
    UnknownAlarmError,
    UnknownTagError,
)

if TYPE_CHECKING:
    from gateway.simulator.server import Simulator

HISTORY_LIMIT_DEFAULT = 1000
HISTORY_LIMIT_MAX = 10_000
LOGIN_PATH = "/api/auth/login"
KNOWN_READS_BYTES = 64 * 2**20  # bodies of bulk reads remembered with their tag numbers


class ApiError(Exception):
    """Ends a request with ``{"error": message}`` and the status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def json_response(data: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def error_response(status: int, message: str) -> web.Response:
    response = json_response({"error": message}, status)
    if status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


def _readingjson_response(reading: Reading, tag_type: str) -> dict[str, object]:
    return {
        "name": reading.name,
        "value": reading.value,
        "quality": reading.quality,
        "timestamp": format_ts(reading.ts_ms),
        "type": tag_type,
    }


async def read_body(request: web.Request, *, optional: bool = False) -> dict[str, object]:
    """The JSON object in the body; ``{}`` for an empty optional body, else 400."""
    raw = await request.read()
    if optional and not raw.strip():
        return {}
    return _body_object(raw)


def _body_object(raw: bytes) -> dict[str, object]:
    """The JSON object ``raw`` holds, else 400."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"malformed JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ApiError(400, "expected a JSON object")
    return body


class RestApi:
    """The ``rest`` routes over the simulator's plant, counters and logs; the tokens it
    issued, checked by the simulator's middleware through ``authorize``."""

    def __init__(self, simulator: Simulator) -> None:
        self._sim = simulator
        self._tokens: dict[str, float] = {}  # token -> monotonic time of login
        self._known_reads: dict[bytes, list[int]] = {}  # body of a bulk read -> tag numbers
        self._known_index: object = None  # the plant's names the reads were resolved in
        self._known_bytes = 0  # the size of those bodies

    def mount(self, router: web.UrlDispatcher) -> None:
        """Add the API's routes."""
        router.add_post(LOGIN_PATH, self._login)
        router.add_post("/api/auth/logout", self._logout)
        router.add_get("/api/dp/browse", self._browse)
        router.add_post("/api/dp/read", self._read_many)
        router.add_get("/api/dp/{name}", self._read_one)
        router.add_put("/api/dp/{name}", self._write)
        router.add_get("/api/alerts/active", self._active_alarms)
        router.add_post("/api/alert/{id}/acknowledge", self._acknowledge)
        router.add_get("/api/history/{name}", self._history)

    def authorize(self, request: web.Request) -> None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise ApiError(401, "missing bearer token")
        issued = self._tokens.get(token.strip())
        if issued is None:
            raise ApiError(401, "invalid token")
        if time.monotonic() - issued >= self._sim.faults.token_ttl:
            del self._tokens[token.strip()]
            raise ApiError(401, "token expired")

    async def _login(self, request: web.Request) -> web.Response:
        body = await read_body(request)
        username, password = body.get("username"), body.get("password")
        if not isinstance(username, str) or not isinstance(password, str):
            raise ApiError(400, 'expected {"username": ..., "password": ...}')
        valid_user = hmac.compare_digest(username.encode(), self._sim.options.username.encode())
        valid_password = hmac.compare_digest(password.encode(), self._sim.options.password.encode())
        if not (valid_user and valid_password):
            raise ApiError(401, "invalid credentials")
        now = time.monotonic()
        ttl = self._sim.faults.token_ttl
        self._tokens = {t: at for t, at in self._tokens.items() if now - at < ttl}
        token = secrets.token_urlsafe(24)
        self._tokens[token] = now
        return json_response({"token": token, "expires_in": int(ttl) if ttl.is_integer() else ttl})

    async def _logout(self, request: web.Request) -> web.Response:
        token = request.headers["Authorization"].partition(" ")[2].strip()
        self._tokens.pop(token, None)
        return json_response({"ok": True})

    async def _read_one(self, request: web.Request) -> web.Response:
        i = self._sim.plant.index.get(request.match_info["name"])
        if i is None:
            raise ApiError(404, f"unknown data point {request.match_info['name']}")
        self._sim.reads += 1
        self._sim.read_items += 1
        return json_response(self._sim.plant.item(i))

    async def _read_many(self, request: web.Request) -> web.Response:
        raw = await request.read()
        plant = self._sim.plant
        if plant.index is not self._known_index:  # another project loaded: names anew
            self._known_reads.clear()
            self._known_bytes = 0
            self._known_index = plant.index
        item_json = plant.item_json
        known = self._known_reads.get(raw)  # the same names as before, all of them known
        values = self._read_names(raw) if known is None else [item_json(i) for i in known]
        self._sim.reads += 1
        self._sim.read_items += len(values)
        # the items are kept encoded (most are unchanged since the last read): join them
        body = b'{"values":[' + b",".join(values) + b"]}"
        return web.Response(body=body, content_type="application/json")

    def _read_names(self, raw: bytes) -> list[bytes]:
        """The items of a read's names; a read of known names only is remembered, since
        a poller asks for the same names again and again."""
        names = _body_object(raw).get("names")
        if not isinstance(names, list):
            raise ApiError(400, 'expected {"names": [...]}')
        index, item_json = self._sim.plant.index, self._sim.plant.item_json
        indexes: list[int] = []
        values: list[bytes] = []
        for name in names:
            if type(name) is not str:
                raise ApiError(400, "names must be strings")
            i = index.get(name)
            if i is None:
                values.append(orjson.dumps({"name": name, "error": "unknown data point"}))
            else:
                indexes.append(i)
                values.append(item_json(i))
        if len(indexes) == len(values):
            if self._known_bytes + len(raw) > KNOWN_READS_BYTES:
                self._known_reads.clear()
                self._known_bytes = 0
            self._known_reads[raw] = indexes
            self._known_bytes += len(raw)
        return values

    async def _write(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        body = await read_body(request)
        if "value" not in body:
            raise ApiError(400, 'expected {"value": ...}')
        try:
            reading = self._sim.plant.write(name, body["value"], now_ms=self._sim.now())
        except UnknownTagError as exc:
            raise ApiError(404, str(exc)) from exc
        except ReadOnlyError as exc:
            raise ApiError(403, str(exc)) from exc
        except TypeMismatchError as exc:
            raise ApiError(400, f"type mismatch for {name}: {exc}") from exc
        self._sim.write_log.append((name, reading.value))
        self._sim.writes += 1
        return json_response(_readingjson_response(reading, self._sim.plant.tag_type(name)))

    async def _active_alarms(self, request: web.Request) -> web.Response:
        # By contract the API reports alarms with the same fields as P/alarms.
        return json_response(
            {"alerts": [alarm_fields(alarm) for alarm in self._sim.plant.active_alarms()]}
        )

    async def _acknowledge(self, request: web.Request) -> web.Response:
        alarm_id = request.match_info["id"]
        comment = (await read_body(request, optional=True)).get("comment")
        if comment is not None and not isinstance(comment, str):
            raise ApiError(400, "comment must be a string")
        try:
            alarm = self._sim.plant.acknowledge(alarm_id, now_ms=self._sim.now())
        except UnknownAlarmError as exc:
            raise ApiError(404, str(exc)) from exc
        self._sim.ack_log.append((alarm_id, comment))
        self._sim.acks += 1
        return json_response(alarm_fields(alarm))

    async def _history(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        query = request.query
        try:
            start_ms = parse_ts(query["start"]) if "start" in query else 0
            end_ms = parse_ts(query["end"]) if "end" in query else self._sim.now()
        except ValueError as exc:
            raise ApiError(400, f"bad start or end timestamp: {exc}") from exc
        if start_ms > end_ms:
            raise ApiError(400, "start is after end")
        limit_text = query.get("limit", str(HISTORY_LIMIT_DEFAULT))
        if not limit_text.isdecimal() or not 1 <= int(limit_text) <= HISTORY_LIMIT_MAX:
            raise ApiError(400, f"limit must be a whole number from 1 to {HISTORY_LIMIT_MAX}")
        cursor_text = query.get("cursor")
        if cursor_text is not None and not (cursor_text.isdecimal() and len(cursor_text) < 19):
            raise ApiError(400, "bad cursor")
        try:
            page, cursor = self._sim.plant.history(
                name,
                start_ms=start_ms,
                end_ms=end_ms,
                limit=int(limit_text),
                cursor=None if cursor_text is None else int(cursor_text),
            )
        except UnknownTagError as exc:
            raise ApiError(404, str(exc)) from exc
        tag_type = self._sim.plant.tag_type(name)
        return json_response(
            {
                "name": name,
                "values": [_readingjson_response(reading, tag_type) for reading in page],
                "next": None if cursor is None else str(cursor),
            }
        )

    async def _browse(self, request: web.Request) -> web.Response:
        path = request.query.get("path", "")
        try:
            children = self._sim.plant.browse(path)
        except UnknownTagError as exc:
            raise ApiError(404, str(exc)) from exc
        return json_response(
            {
                "path": path,
                "children": [
                    {
                        "name": child.name,
                        "type": child.type,
                        "has_children": child.has_children,
                        "writable": child.writable,
                    }
                    for child in children
                ],
            }
        )
