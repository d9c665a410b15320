"""The simulated WinCC Unified runtime: GraphQL over HTTP in front of the simulator's plant.

Resolvers are bound to the fields of this API's own schema; graphql-core parses, validates
and executes every document. A session is required for every operation but ``login``; it
ends after ``auto_logoff`` seconds without an authorized request (subscriptions alone do
not keep it alive, ``extendSession`` does). ``clock`` is the session clock, replaceable by
tests that need time to pass.

Error codes in answers: "0" success, "2" no such tag, logging tag or active alarm, "101"
wrong user name or password, "201" value not convertible to the tag's type; "203" (tag
not writable) is the simulator's own choice. Written values take the server's time and a
good quality: the ``timestamp`` and ``quality`` inputs are accepted and not applied.
Logged values come from the plant's history, one logging tag ``<tag>:Log`` per tag;
bounding values are not offered.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hmac
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from inspect import isawaitable
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web
from graphql import (
    ExecutionResult,
    FieldNode,
    GraphQLError,
    GraphQLObjectType,
    GraphQLResolveInfo,
    GraphQLSchema,
    OperationType,
    execute,
    get_operation_ast,
    parse,
    subscribe,
    validate,
)

from gateway.core.models import TagType, Value
from gateway.core.timestamps import format_ts, parse_ts
from gateway.simulator.plant import (
    ROOT,
    ReadOnlyError,
    SimAlarm,
    TypeMismatchError,
    UnknownAlarmError,
    UnknownTagError,
)
from gateway.simulator.unified_schema import make_schema, quality_fields
from gateway.simulator.unified_ws import WebSocketConnection, bearer, serve_websocket

if TYPE_CHECKING:
    from gateway.simulator.server import Simulator

GRAPHQL_PATH = "/graphql/"
MAX_BODY = 1024 * 1024  # requests over 1 MB are refused with 413
LOGGING_TAG = "Log"  # the one logging tag of every tag: "<tag>:Log"
NEVER = format_ts(0)  # how Unified writes a time that has not happened
OK = {"code": "0", "description": ""}
NOT_FOUND, WRONG_CREDENTIALS, NOT_CONVERTIBLE, NOT_WRITABLE = "2", "101", "201", "203"
AUTH_MESSAGE = "Unauthenticated: no valid session for this request; log in first"
PUBLIC_FIELDS = frozenset({"login", "__typename", "__schema", "__type"})
DATA_TYPES = {TagType.BOOL: "Bool", TagType.INT: "DInt", TagType.FLOAT: "LReal"}
DATA_TYPES[TagType.STRING] = "WString"
TAG_OBJECT_TYPES = frozenset({"TAG", "SIMPLETAG"})

Errors = list[Mapping[str, object]]


@dataclass(slots=True)
class Session:
    """A login: its token and user, and when it ends on the session clock."""

    token: str
    user: str
    deadline: float


class _Refused(Exception):
    """Ends a request with one GraphQL error and an HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _answer(body: Mapping[str, object], status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def _value(value: Value, quality: int, ts_ms: int) -> dict[str, object]:
    return {"value": value, "timestamp": format_ts(ts_ms), "quality": quality_fields(quality)}


def unified_state(alarm: SimAlarm) -> str:
    """The alarm's state as Unified names it."""
    if alarm.came_at is None:
        return "NORMAL"
    if alarm.went_at is None:
        return "RAISED_ACKNOWLEDGED" if alarm.acked else "RAISED"
    if not alarm.acked:
        return "RAISED_CLEARED"
    assert alarm.acked_at is not None
    acked_first = alarm.acked_at <= alarm.went_at
    return "RAISED_ACKNOWLEDGED_CLEARED" if acked_first else "RAISED_CLEARED_ACKNOWLEDGED"


class UnifiedApi:
    """The GraphQL endpoint, its sessions, and the subscribers of plant changes."""

    def __init__(self, simulator: Simulator) -> None:
        self._sim = simulator
        self.path = simulator.options.graphql_path
        self.auto_logoff = simulator.options.auto_logoff
        self.clock: Callable[[], float] = time.monotonic
        self.sessions: dict[str, Session] = {}
        self.connections: set[WebSocketConnection] = set()
        self.schema = self._bind(make_schema())
        self._tag_queues: dict[int, list[asyncio.Queue[dict[str, object]]]] = {}
        self._alarm_queues: list[asyncio.Queue[tuple[str, bool, dict[str, object]]]] = []
        self._alarm_names = {
            alarm.id: f"{ROOT}::{alarm.tag}:{alarm.point.text.title().replace(' ', '')}"
            for alarm in simulator.plant.alarms.values()
        }
        self._alarms_by_name = {name: alarm_id for alarm_id, name in self._alarm_names.items()}

    def _bind(self, schema: GraphQLSchema) -> GraphQLSchema:
        assert schema.query_type and schema.mutation_type and schema.subscription_type
        resolvers: dict[GraphQLObjectType, dict[str, Callable[..., Any]]] = {
            schema.query_type: {
                "tagValues": self._tag_values,
                "browse": self._browse,
                "loggedTagValues": self._logged_tag_values,
                "activeAlarms": self._active_alarms,
            },
            schema.mutation_type: {
                "login": self._login,
                "extendSession": self._extend_session,
                "logout": self._logout,
                "writeTagValues": self._write_tag_values,
                "acknowledgeAlarms": self._acknowledge_alarms,
            },
        }
        for parent, fields in resolvers.items():
            for name, resolver in fields.items():
                parent.fields[name].resolve = resolver
        streams = schema.subscription_type.fields
        streams["tagValues"].subscribe = self._subscribe_tag_values
        streams["activeAlarms"].subscribe = self._subscribe_alarms
        for field in streams.values():
            field.resolve = lambda event, _info, **_args: event
        return schema

    def mount(self, router: web.UrlDispatcher) -> None:
        """Add the endpoint (and its redirect) and start following the plant's changes."""
        router.add_post(self.path, self._post)
        router.add_get(self.path, self._get)
        if self.path.endswith("/") and len(self.path) > 1:
            router.add_route("*", self.path.rstrip("/"), self._redirect)
        self._sim.plant.on_change = self._tag_changed
        self._sim.plant.on_alarm = self._alarm_changed

    def owns(self, path: str) -> bool:
        """Whether a request path is the endpoint's (faults apply to it)."""
        return path.rstrip("/") == self.path.rstrip("/")

    # --- sessions ------------------------------------------------------------------------

    def session(self, token: str | None) -> Session | None:
        """The live session of a token, or None."""
        found = self.sessions.get(token or "")
        if found is not None and found.deadline <= self.clock():
            self.end_sessions([found.token])
            return None
        return found

    def end_sessions(self, tokens: list[str] | None = None) -> int:
        """End sessions (all without ``tokens``) and close their WebSockets with 4401."""
        ended = set(self.sessions if tokens is None else tokens) & set(self.sessions)
        for token in ended:
            del self.sessions[token]
        for connection in list(self.connections):
            if connection.token in ended:
                connection.end(4401, "Unauthorized: the session ended")
        return len(ended)

    def expire_idle(self) -> None:
        """End the sessions whose inactivity window passed; the simulator calls it per tick."""
        now = self.clock()
        self.end_sessions([s.token for s in self.sessions.values() if s.deadline <= now])

    def drop_websockets(self) -> int:
        """Cut every WebSocket without a closing handshake, as a lost network does."""
        dropped = list(self.connections)
        for connection in dropped:
            connection.drop()
        return len(dropped)

    def _session_fields(self, session: Session) -> dict[str, object]:
        remaining_ms = round((session.deadline - self.clock()) * 1000)
        return {
            "user": {
                "id": "1",
                "name": session.user,
                "fullName": session.user,
                "language": "en-US",
                "autoLogoffSec": round(self.auto_logoff),
            },
            "token": session.token,
            "expires": format_ts(self._sim.now() + remaining_ms),
            "error": OK,
        }

    # --- executing documents -------------------------------------------------------------

    async def run(
        self,
        query: str,
        variables: dict[str, Any] | None,
        operation_name: str | None,
        token: str | None,
    ) -> Errors | ExecutionResult | AsyncIterator[ExecutionResult]:
        """Execute a document: a list of errors if it does not parse or validate, the
        result of a query or mutation, or the results of a subscription as they come."""
        try:
            document = parse(query)
        except GraphQLError as exc:
            return [exc.formatted]
        invalid = validate(self.schema, document)
        if invalid:
            return [error.formatted for error in invalid]
        operation = get_operation_ast(document, operation_name)
        needs_session = operation is not None and any(
            not isinstance(node, FieldNode) or node.name.value not in PUBLIC_FIELDS
            for node in operation.selection_set.selections
        )
        session = self.session(token)
        if needs_session and session is None:
            return ExecutionResult(None, [GraphQLError(AUTH_MESSAGE, extensions=_UNAUTH)])
        if session is not None:
            session.deadline = self.clock() + self.auto_logoff
        context = {"session": session}
        if operation is not None and operation.operation is OperationType.SUBSCRIPTION:
            return await subscribe(self.schema, document, None, context, variables, operation_name)
        result = execute(self.schema, document, None, context, variables, operation_name)
        return await result if isawaitable(result) else result

    async def _post(self, request: web.Request) -> web.Response:
        try:
            query, variables, operation_name = await _read_request(request)
        except _Refused as exc:
            return _answer({"errors": [{"message": exc.message}]}, exc.status)
        token = bearer(request.headers.get("Authorization"))
        outcome = await self.run(query, variables, operation_name, token)
        if isinstance(outcome, list):
            return _answer({"errors": outcome}, 400)
        if not isinstance(outcome, ExecutionResult):
            await outcome.aclose()  # type: ignore[attr-defined]
            message = "subscriptions are served over the WebSocket (graphql-transport-ws)"
            return _answer({"errors": [{"message": message}]}, 400)
        return _answer(outcome.formatted)

    async def _get(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await serve_websocket(self, request)
        message = "queries and mutations are POSTed; GET serves the WebSocket only"
        return _answer({"errors": [{"message": message}]}, 405)

    async def _redirect(self, request: web.Request) -> web.Response:
        status = 301 if request.method == "GET" else 308
        return web.Response(status=status, headers={"Location": self.path})

    # --- queries -------------------------------------------------------------------------

    def tag_result(self, name: str) -> dict[str, object]:
        """A tag's current value, or the not-found error, as ``TagValueResult``."""
        plant = self._sim.plant
        i = plant.index.get(name)
        if i is None:
            return {"name": name, "value": None, "error": _not_found(f"no tag {name}")}
        item = plant.item(i)
        quality = item["quality"]
        assert isinstance(quality, int)
        value = {"value": item["value"], "timestamp": item["timestamp"]}
        return {"name": name, "value": {**value, "quality": quality_fields(quality)}, "error": OK}

    def _tag_values(self, _root: None, _info: GraphQLResolveInfo, **args: Any) -> list[object]:
        names: list[str] = args["names"]
        self._sim.reads += 1
        self._sim.read_items += len(names)
        return [self.tag_result(name) for name in names]

    def _browse(self, _root: None, _info: GraphQLResolveInfo, **args: Any) -> list[object]:
        filters = [re.compile(fnmatch.translate(f)) for f in args["nameFilters"] or () if f]
        kinds = {kind for kind in args["objectTypeFilters"] or () if kind}
        plant = self._sim.plant

        def wanted(name: str) -> bool:
            return not filters or any(pattern.match(name) for pattern in filters)

        found: list[object] = []
        if not kinds or kinds & TAG_OBJECT_TYPES:
            found.extend(
                {
                    "name": name,
                    "displayName": name.rsplit(".", 1)[-1],
                    "objectType": "TAG",
                    "dataType": DATA_TYPES[plant.tag_type(name)],
                }
                for name in plant.names
                if wanted(name)
            )
        if not kinds or "ALARM" in kinds:
            found.extend(
                {"name": name, "displayName": name.rsplit(":", 1)[-1], "objectType": "ALARM"}
                for name in self._alarms_by_name
                if wanted(name)
            )
        return found

    def _logged_tag_values(
        self, _root: None, _info: GraphQLResolveInfo, **args: Any
    ) -> list[object]:
        try:
            start_ms = parse_ts(args["startTime"]) if args.get("startTime") else 0
            end_ms = parse_ts(args["endTime"]) if args.get("endTime") else self._sim.now()
        except (TypeError, ValueError) as exc:
            raise GraphQLError(f"bad startTime or endTime: {exc}") from exc
        limit = args["maxNumberOfValues"] or 0
        descending = args["sortingMode"] == "TIME_DESC"
        results: list[object] = []
        plant = self._sim.plant
        for name in args["names"]:
            tag, _, logging_tag = (name or "").rpartition(":")
            if logging_tag != LOGGING_TAG or tag not in plant.index:
                error = _not_found(f"no logging tag {name}")
                results.append({"loggingTagName": name, "error": error, "values": []})
                continue
            depth = max(1, plant.history_length(tag))
            page, _ = plant.history(tag, start_ms=start_ms, end_ms=end_ms, limit=depth)
            if descending:
                page.reverse()
            if limit > 0:
                page = page[:limit]
            values = [{"value": _value(r.value, r.quality, r.ts_ms), "flags": []} for r in page]
            results.append({"loggingTagName": name, "error": OK, "values": values})
        return results

    def alarm_fields(self, alarm: SimAlarm) -> dict[str, object]:
        """The ``ActiveAlarm`` fields of an alarm as it is now."""
        times = [t for t in (alarm.came_at, alarm.went_at, alarm.acked_at) if t is not None]
        return {
            "name": self._alarm_names[alarm.id],
            "instanceID": int(alarm.id),
            "alarmClassName": "Alarm" if alarm.point.priority >= 8 else "Warning",
            "state": unified_state(alarm),
            "priority": alarm.point.priority,
            "eventText": [alarm.text],
            "raiseTime": _time(alarm.came_at),
            "acknowledgmentTime": _time(alarm.acked_at),
            "clearTime": _time(alarm.went_at),
            "modificationTime": _time(max(times, default=None)),
            "value": self._sim.plant.reading(alarm.tag).value,
        }

    def _active_alarms(self, _root: None, _info: GraphQLResolveInfo, **args: Any) -> list[object]:
        if args["systemNames"] and ROOT not in args["systemNames"]:
            return []
        plant = self._sim.plant
        return [self.alarm_fields(plant.alarms[alarm.id]) for alarm in plant.active_alarms()]

    # --- mutations -----------------------------------------------------------------------

    def _login(self, _root: None, _info: GraphQLResolveInfo, **args: Any) -> dict[str, object]:
        options = self._sim.options
        valid_user = hmac.compare_digest(args["username"].encode(), options.username.encode())
        valid_password = hmac.compare_digest(args["password"].encode(), options.password.encode())
        if not (valid_user and valid_password):
            error = {"code": WRONG_CREDENTIALS, "description": "wrong user name or password"}
            return {"user": None, "token": None, "expires": None, "error": error}
        session = Session(secrets.token_urlsafe(24), args["username"], 0.0)
        session.deadline = self.clock() + self.auto_logoff
        self.sessions[session.token] = session
        return self._session_fields(session)

    def _extend_session(self, _root: None, info: GraphQLResolveInfo) -> dict[str, object]:
        session: Session = info.context["session"]  # the run() call extended it already
        return self._session_fields(session)

    def _logout(self, _root: None, info: GraphQLResolveInfo, **args: Any) -> bool:
        session: Session = info.context["session"]
        tokens = [session.token]
        if args["allSessions"]:
            tokens = [s.token for s in self.sessions.values() if s.user == session.user]
        self.end_sessions(tokens)
        return True

    def _write_tag_values(
        self, _root: None, _info: GraphQLResolveInfo, **args: Any
    ) -> list[object]:
        return [self._write(item) for item in args["input"]]

    def _write(self, item: dict[str, Any] | None) -> dict[str, object]:
        if item is None:
            return {"name": None, "error": _not_found("no tag given")}
        sim, name = self._sim, item["name"]
        try:
            reading = sim.plant.write(name, item["value"], now_ms=sim.now())
        except UnknownTagError as exc:
            return {"name": name, "error": _not_found(str(exc))}
        except TypeMismatchError as exc:
            error = {"code": NOT_CONVERTIBLE, "description": f"cannot convert: {exc}"}
            return {"name": name, "error": error}
        except ReadOnlyError as exc:
            return {"name": name, "error": {"code": NOT_WRITABLE, "description": str(exc)}}
        sim.write_log.append((name, reading.value))
        sim.writes += 1
        return {"name": name, "error": OK}

    def _acknowledge_alarms(
        self, _root: None, _info: GraphQLResolveInfo, **args: Any
    ) -> list[object]:
        return [self._acknowledge(item) for item in args["input"]]

    def _acknowledge(self, item: dict[str, Any] | None) -> dict[str, object]:
        name, instance = (None, 0) if item is None else (item["name"], item["instanceID"])
        alarm_id = self._alarms_by_name.get(name or "")
        result: dict[str, object] = {"alarmName": name, "alarmInstanceID": instance}
        if alarm_id is None or instance not in (0, None, int(alarm_id)):
            return {**result, "error": _not_found(f"no alarm {name} with instance {instance}")}
        try:
            self._sim.plant.acknowledge(alarm_id, now_ms=self._sim.now())
        except UnknownAlarmError as exc:
            return {**result, "error": _not_found(str(exc))}
        self._sim.ack_log.append((alarm_id, None))
        self._sim.acks += 1
        return {**result, "alarmInstanceID": int(alarm_id), "error": OK}

    # --- subscriptions -------------------------------------------------------------------

    def _tag_changed(self, i: int, value: Value, quality: int, ts_ms: int) -> None:
        queues = self._tag_queues.get(i)
        if queues:
            name = self._sim.plant.names[i]
            note: dict[str, object] = {
                "name": name,
                "value": _value(value, quality, ts_ms),
                "error": OK,
                "notificationReason": "Modified",
            }
            for queue in queues:
                queue.put_nowait(note)

    def _alarm_changed(self, alarm: SimAlarm) -> None:
        if self._alarm_queues:
            event = (alarm.id, alarm.active, self.alarm_fields(alarm))
            for queue in self._alarm_queues:
                queue.put_nowait(event)

    async def _subscribe_tag_values(
        self, _root: None, _info: GraphQLResolveInfo, **args: Any
    ) -> AsyncIterator[dict[str, object]]:
        """Each name's current value ("Added"), then every change ("Modified")."""
        names: list[str] = args["names"]
        index = self._sim.plant.index
        watched = {index[name] for name in names if name in index}
        queue: asyncio.Queue[dict[str, object]] = asyncio.Queue()
        for i in watched:
            self._tag_queues.setdefault(i, []).append(queue)
        try:
            for name in names:
                yield {**self.tag_result(name), "notificationReason": "Added"}
            while True:
                yield await queue.get()
        finally:
            for i in watched:
                self._tag_queues[i].remove(queue)
                if not self._tag_queues[i]:
                    del self._tag_queues[i]

    async def _subscribe_alarms(
        self, _root: None, _info: GraphQLResolveInfo, **args: Any
    ) -> AsyncIterator[dict[str, object]]:
        """The active alarms ("Added"), then each that comes ("Added"), changes ("Modified")
        or leaves the list ("Removed")."""
        queue: asyncio.Queue[tuple[str, bool, dict[str, object]]] = asyncio.Queue()
        ours = not args["systemNames"] or ROOT in args["systemNames"]
        if ours:
            self._alarm_queues.append(queue)
        listed: set[str] = set()
        try:
            for alarm in self._sim.plant.active_alarms() if ours else ():
                listed.add(alarm.id)
                fields = self.alarm_fields(self._sim.plant.alarms[alarm.id])
                yield {**fields, "notificationReason": "Added"}
            while True:
                alarm_id, active, fields = await queue.get()
                if active:
                    reason = "Modified" if alarm_id in listed else "Added"
                    listed.add(alarm_id)
                elif alarm_id in listed:
                    reason = "Removed"
                    listed.discard(alarm_id)
                else:
                    continue
                yield {**fields, "notificationReason": reason}
        finally:
            if ours:
                self._alarm_queues.remove(queue)


_UNAUTH = {"code": "UNAUTHENTICATED"}


async def _read_request(request: web.Request) -> tuple[str, dict[str, Any] | None, str | None]:
    """Query, variables and operation name of a POST, after the checks a runtime makes."""
    if request.content_type != "application/json":
        raise _Refused(415, "Content-Type must be application/json (other posts may be forged)")
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise _Refused(413, "request larger than 1 MB")
    try:
        body = orjson.loads(await request.read())
    except web.HTTPRequestEntityTooLarge:
        raise _Refused(413, "request larger than 1 MB") from None
    except orjson.JSONDecodeError as exc:
        raise _Refused(400, f"malformed JSON: {exc}") from exc
    if not isinstance(body, dict):
        body = {}
    query, variables, operation_name = (body.get(key) for key in _REQUEST_KEYS)
    if (
        not isinstance(query, str)
        or not isinstance(variables, dict | None)
        or not isinstance(operation_name, str | None)
    ):
        raise _Refused(400, 'expected {"query": "...", "variables": {...}, "operationName": ...}')
    return query, variables, operation_name


_REQUEST_KEYS = ("query", "variables", "operationName")


def _not_found(description: str) -> dict[str, str]:
    return {"code": NOT_FOUND, "description": description}


def _time(ms: int | None) -> str:
    return NEVER if ms is None else format_ts(ms)
