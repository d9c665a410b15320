"""The simulated WinCC Unified runtime: GraphQL over HTTP in front of the simulator's plant.

Resolvers are bound to the fields of this API's own schema; graphql-core parses, validates
and executes every document. A session is required for every operation but ``login``; it
ends after ``auto_logoff`` seconds without an authorized request (subscriptions alone do
not keep it alive, ``extendSession`` does). ``clock`` is the session clock, replaceable by
tests that need time to pass.

A wrong user name or password is a ``Session`` with error code "101" and no token. Over
HTTP, a document that does not parse or validate is answered 400 with ``errors``, a
missing or ended session 200 with an ``UNAUTHENTICATED`` error and no data.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from inspect import isawaitable
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web
from graphql import (
    DocumentNode,
    ExecutionResult,
    FieldNode,
    GraphQLError,
    GraphQLObjectType,
    GraphQLResolveInfo,
    GraphQLSchema,
    ListTypeNode,
    NonNullTypeNode,
    OperationDefinitionNode,
    OperationType,
    TypeNode,
    create_source_event_stream,
    execute,
    get_operation_ast,
    parse,
    validate,
)

from gateway.core.timestamps import format_ts
from gateway.simulator.unified_data import OK, PlantResolvers
from gateway.simulator.unified_projection import projected, projection
from gateway.simulator.unified_schema import make_schema
from gateway.simulator.unified_ws import WebSocketConnection, bearer, serve_websocket

if TYPE_CHECKING:
    from gateway.simulator.server import Simulator

GRAPHQL_PATH = "/graphql/"
MAX_BODY = 1024 * 1024  # requests over 1 MB are refused with 413
WRONG_CREDENTIALS = "101"
AUTH_MESSAGE = "Unauthenticated: no valid session for this request; log in first"
_UNAUTH = {"code": "UNAUTHENTICATED"}
PUBLIC_FIELDS = frozenset({"login", "__typename", "__schema", "__type"})

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


class UnifiedApi:
    """The GraphQL endpoint, its sessions and WebSockets; the plant's side is ``data``."""

    def __init__(self, simulator: Simulator) -> None:
        self._sim = simulator
        self.path = simulator.options.graphql_path
        self.auto_logoff = simulator.options.auto_logoff
        self.clock: Callable[[], float] = time.monotonic
        self.init_timeout = 3.0  # seconds from opening a WebSocket to its connection_init
        self.sessions: dict[str, Session] = {}
        self.connections: set[WebSocketConnection] = set()
        self.data = PlantResolvers(simulator)

    @cached_property
    def schema(self) -> GraphQLSchema:
        """The schema with this API's resolvers, built on first use: only the unified
        dialect pays for it."""
        return self._bind(make_schema())

    def _bind(self, schema: GraphQLSchema) -> GraphQLSchema:
        assert schema.query_type and schema.mutation_type and schema.subscription_type
        data = self.data
        resolvers: dict[GraphQLObjectType, dict[str, Callable[..., Any]]] = {
            schema.query_type: {
                "tagValues": data.tag_values,
                "browse": data.browse,
                "loggedTagValues": data.logged_tag_values,
                "activeAlarms": data.active_alarms,
            },
            schema.mutation_type: {
                "login": self._login,
                "extendSession": self._extend_session,
                "logout": self._logout,
                "writeTagValues": data.write_tag_values,
                "acknowledgeAlarms": data.acknowledge_alarms,
            },
        }
        for parent, fields in resolvers.items():
            for name, resolver in fields.items():
                parent.fields[name].resolve = resolver
        streams = schema.subscription_type.fields
        streams["tagValues"].subscribe = data.subscribe_tag_values
        streams["activeAlarms"].subscribe = data.subscribe_alarms
        streams["reduState"].subscribe = data.subscribe_redu_state
        for field in streams.values():
            field.resolve = lambda event, _info, **_args: event
        return schema

    def mount(self, router: web.UrlDispatcher) -> None:
        """Add the endpoint (and its redirect) and start following the plant's changes."""
        router.add_post(self.path, self._post)
        router.add_get(self.path, self._get)
        if self.path.endswith("/") and len(self.path) > 1:
            router.add_route("*", self.path.rstrip("/"), self._redirect)
        self._sim.plant.on_change = self.data.tag_changed
        self._sim.plant.on_alarm = self.data.alarm_changed

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
    ) -> Errors | ExecutionResult | AsyncGenerator[ExecutionResult, None]:
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
            return await self._subscribe(document, operation, context, variables)
        return await self._execute(document, None, context, variables, operation_name)

    async def _subscribe(
        self,
        document: DocumentNode,
        operation: OperationDefinitionNode,
        context: dict[str, Any],
        variables: dict[str, Any] | None,
    ) -> ExecutionResult | AsyncGenerator[ExecutionResult, None]:
        """The results of a subscription as they come, or the error that refused it."""
        name = operation.name.value if operation.name else None
        source = await create_source_event_stream(
            self.schema, document, None, context, variables, name
        )
        if isinstance(source, ExecutionResult):
            return source
        project = projection(operation)
        if project is not None:
            return projected(source, project)
        light = _light_variables(operation, variables)
        return self._notifications(source, document, context, light, name)

    async def _execute(
        self,
        document: DocumentNode,
        root: object,
        context: dict[str, Any],
        variables: dict[str, Any] | None,
        operation_name: str | None,
    ) -> ExecutionResult:
        result = execute(self.schema, document, root, context, variables, operation_name)
        return await result if isawaitable(result) else result

    async def _notifications(
        self,
        source: AsyncIterable[object],
        document: DocumentNode,
        context: dict[str, Any],
        variables: dict[str, Any] | None,
        operation_name: str | None,
    ) -> AsyncGenerator[ExecutionResult, None]:
        """One result per event of a subscription's source, its selection applied."""
        try:
            async for event in source:
                yield await self._execute(document, event, context, variables, operation_name)
        finally:
            await source.aclose()  # type: ignore[attr-defined]

    async def writes_in(self, request: web.Request) -> list[str]:
        """``PUT <tag>`` for every tag a POST writes, as the rest dialect's requests read,
        so tests see a write in flight alike; nothing for any other POST."""
        if request.method != "POST" or not self.owns(request.path):
            return []
        try:
            body = orjson.loads(await request.read())
        except (orjson.JSONDecodeError, web.HTTPException):
            return []
        query = body.get("query") if isinstance(body, dict) else None
        variables = body.get("variables") if isinstance(body, dict) else None
        if not isinstance(query, str) or "writeTagValues" not in query:
            return []
        items = variables.get("input") if isinstance(variables, dict) else None
        return [
            f"PUT {item['name']}"
            for item in items or []
            if isinstance(item, dict) and isinstance(item.get("name"), str)
        ]

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
            await outcome.aclose()
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

    # --- session mutations ---------------------------------------------------------------

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


def _light_variables(
    operation: OperationDefinitionNode, variables: dict[str, Any] | None
) -> dict[str, Any] | None:
    """The variables with every list emptied, for running a subscription's selection on
    each of its events.

    graphql-core coerces the variables again on every execution, and a list of 50,000 tag
    names made each notification cost milliseconds. Only the root field's arguments take a
    list here (directives take a Boolean, nested fields no arguments), and those arguments
    served the source stream already, so an empty list changes no result.
    """
    if not variables:
        return variables

    def is_list(node: TypeNode) -> bool:
        return isinstance(node.type if isinstance(node, NonNullTypeNode) else node, ListTypeNode)

    lists = {d.variable.name.value for d in operation.variable_definitions if is_list(d.type)}
    return {k: [] if k in lists and v is not None else v for k, v in variables.items()}
