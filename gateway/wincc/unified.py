"""The ``unified`` dialect: WinCC Unified's GraphQL interface, queries and mutations over
HTTP POST (subscriptions: ``gateway.wincc.unified_ws``).

Built on ``gateway.wincc.http`` like the other dialects. What differs: every operation is
a POST of ``{query, variables}`` to the one URL as configured (``/graphql/`` and
``/graphql`` are different addresses; a redirect is reported, never followed), a login
mutation whose success is ``error.code == "0"`` with a token, and errors that come as a
GraphQL ``errors`` list beside ``data``. A request the server refuses for want of a
session is retried once after logging in again; one refused after that is a
``WinCCAuthError``. The answers are parsed in ``gateway.wincc.unified_parse``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any, Unpack

import aiohttp
import orjson
from pydantic import SecretStr

from gateway.core.models import Alarm, Reading, ReadResult, TagInfo, Value
from gateway.core.timestamps import format_ts
from gateway.core.values import short_text, show
from gateway.errors import (
    WinCCAuthError,
    WinCCError,
    WinCCNotFound,
    WinCCProtocolError,
    WinCCRejected,
)
from gateway.wincc import unified_queries as q
from gateway.wincc.http import HttpClient, HttpOptions, raise_for_status
from gateway.wincc.login import SharedLogin
from gateway.wincc.tree import Cached, tree_of
from gateway.wincc.unified_parse import (
    item_error,
    parse_active_alarms,
    parse_browse,
    parse_logged_values,
    parse_tag_values,
    parse_write_results,
)
from gateway.wincc.unified_ws import SubscriptionSocket

_LOG = logging.getLogger(__name__)

TREE_TTL = 60.0
"""Seconds the browsed tag list is reused: resolving globs asks for it once per folder."""
LOGGING_TAG = "{tag}:Log"
"""The name of a tag's logging tag, ``{tag}`` standing for the tag's name."""
MAX_REQUEST_BYTES = 1_000_000
"""Largest request the runtime takes (it answers 413 beyond)."""
NOT_FOUND = "2"
"""The error code of a name (tag, alarm) the runtime does not know."""
_AUTH_WORDS = ("auth", "token", "session", "login", "logged in", "unauthenticated")


class UnifiedClient(HttpClient):
    """A client of one WinCC Unified runtime over GraphQL."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        username: str,
        password: SecretStr | None,
        *,
        logging_tag: str = LOGGING_TAG,
        **options: Unpack[HttpOptions],
    ) -> None:
        super().__init__(session, url, username, password, **options)
        self._path = "/" if url.endswith("/") else ""  # the URL as configured, slash and all
        self._auth = SharedLogin(self._login, self._url + self._path)
        self._tree = Cached(self._fetch_tree, TREE_TTL)
        self._logging_tag = logging_tag
        self._alarm_keys: dict[str, tuple[str, int]] = {}  # alarm id -> name, instance
        self.auto_logoff: float | None = None  # seconds of inactivity that end a session

    @property
    def url(self) -> str:
        """The GraphQL endpoint, as configured (subscriptions use it too)."""
        return self._url + self._path

    async def token(self) -> str:
        """The session token, logging in first if there is none."""
        return await self._auth.current()

    async def renew(self, stale: str) -> str:
        """A new session after ``stale`` was refused (shared with concurrent callers)."""
        return await self._auth.token_after(stale)

    def socket(self, token: str) -> SubscriptionSocket:
        """A subscription socket on the GraphQL URL under session ``token``, to enter."""
        return SubscriptionSocket(self._session, self.url, token, timeout=self._timeout)

    # --- the API -------------------------------------------------------------------------

    async def _read_chunk(self, names: Sequence[str]) -> ReadResult:
        """One chunk of ``read_many``, read with a single ``tagValues`` query."""
        data = await self._call("tagValues", q.TAG_VALUES, {"names": list(names)})
        return parse_tag_values(names, data)

    async def read(self, name: str) -> Reading:
        """Read one tag."""
        result = await self._read_chunk([name])
        if result.readings:
            return result.readings[0]
        raise WinCCNotFound(f"tagValues {name}: {result.errors.get(name, 'not in the answer')}")

    async def write(self, name: str, value: Value) -> Reading:
        """Write one tag, then read it back: the answer only says whether it was taken."""
        data = await self._call(
            "writeTagValues", q.WRITE_TAG_VALUES, {"input": [{"name": name, "value": value}]}
        )
        errors = parse_write_results(data)
        if name not in errors:
            raise WinCCProtocolError(f"writeTagValues {name}: the answer does not name the tag")
        failure = errors[name]
        if failure is not None:
            if failure.endswith(f"(code {NOT_FOUND})"):
                raise WinCCNotFound(f"writeTagValues {name}: {failure}")
            raise WinCCRejected(f"writeTagValues {name}: {failure}")
        return await self.read(name)

    async def active_alarms(self) -> list[Alarm]:
        """The alarms active now."""
        alarms, keys = parse_active_alarms(await self._call("activeAlarms", q.ACTIVE_ALARMS, {}))
        self._alarm_keys = keys
        return alarms

    def remember_alarm(self, alarm_id: str, key: tuple[str, int]) -> None:
        """Note the name and instance of an alarm a subscription reported, for its ack."""
        self._alarm_keys[alarm_id] = key

    async def acknowledge(self, alarm_id: str, comment: str | None = None) -> None:
        """Acknowledge one alarm by its name and instance (the comment is not carried:
        the interface has no field for it)."""
        name, instance = self._alarm_keys.get(alarm_id, (alarm_id, 0))
        data = await self._call(
            "acknowledgeAlarms",
            q.ACKNOWLEDGE_ALARMS,
            {"input": [{"name": name, "instanceID": instance}]},
        )
        if type(data) is not list or not data:
            raise WinCCProtocolError(f"acknowledgeAlarms {alarm_id}: {show(data)} is no result")
        failure = item_error(data[0]) if type(data[0]) is dict else "malformed result"
        if failure is not None:
            if failure.endswith(f"(code {NOT_FOUND})"):
                raise WinCCNotFound(f"acknowledgeAlarms {alarm_id}: {failure}")
            raise WinCCRejected(f"acknowledgeAlarms {alarm_id}: {failure}")

    async def history(self, name: str, start_ms: int, end_ms: int) -> AsyncIterator[Reading]:
        """Archived values of ``name`` in [start, end], oldest first, page by page: each
        page starts just after the last value of the one before."""
        logging_tag = self._logging_tag.replace("{tag}", name)
        start = start_ms
        while True:
            data = await self._call(
                "loggedTagValues",
                q.LOGGED_TAG_VALUES,
                {
                    "names": [logging_tag],
                    "startTime": format_ts(start),
                    "endTime": format_ts(end_ms),
                    "maxNumberOfValues": self._history_page,
                },
            )
            page = parse_logged_values(name, data)
            for reading in page:
                yield reading
            if len(page) < self._history_page or not page:
                return
            if page[-1].ts_ms < start:
                raise WinCCProtocolError(f"loggedTagValues of {name}: pages go back in time")
            start = page[-1].ts_ms + 1

    async def browse(self, path: str) -> list[TagInfo]:
        """The direct children of ``path`` in the tree of the runtime's dotted tag names."""
        children = (await self._tree.get()).get(path.removesuffix("."))
        if children is None:
            raise WinCCNotFound(f"browse: no tag names start with {path!r}")
        return list(children)

    async def extend_session(self) -> None:
        """Keep the session alive while only subscriptions run (they do not count as
        activity everywhere)."""
        await self._call("extendSession", q.EXTEND_SESSION, {})

    async def close(self) -> None:
        """Log out, best effort: the session ends by inactivity anyway."""
        token = self._auth.forget()
        if token is None:
            return
        try:
            await self._post(q.LOGOUT, {"allSessions": False}, token)
        except WinCCError as exc:
            _LOG.debug("logout from %s failed, the session will expire: %s", self.url, exc)

    # --- requests and authentication -------------------------------------------------

    async def _fetch_tree(self) -> dict[str, list[TagInfo]]:
        return tree_of(parse_browse(await self._call("browse", q.BROWSE, {})))

    async def _call(self, field: str, document: str, variables: dict[str, Any]) -> Any:
        """The ``data[field]`` of one authenticated operation, or a ``WinCCError``.

        A refusal for want of a session (401, or GraphQL errors about the token) means it
        expired or the runtime restarted: log in again (shared) and retry exactly once.
        """
        token = await self._auth.current()
        try:
            return _field(field, await self._post(document, variables, token))
        except _SessionRefused:
            token = await self._auth.token_after(token)
        try:
            return _field(field, await self._post(document, variables, token))
        except _SessionRefused as exc:
            raise WinCCAuthError(
                f"{field}: refused right after logging in again as {self._username!r}: {exc}"
            ) from exc

    async def _post(self, document: str, variables: dict[str, Any], token: str | None) -> Any:
        """The decoded answer of one POST; raises ``_SessionRefused`` for a 401."""
        body = {"query": document, "variables": variables}
        if len(orjson.dumps(body)) > MAX_REQUEST_BYTES:
            raise WinCCRejected(
                f"POST {self.url}: a request of more than {MAX_REQUEST_BYTES} bytes; "
                "lower wincc.batch_size"
            )
        status, answer = await self._send(
            "POST",
            self._path,
            authorization=None if token is None else f"Bearer {token}",
            json=body,
            follow_redirects=False,
        )
        if status == 401:
            raise _SessionRefused("401")
        if 300 <= status < 400:
            raise WinCCProtocolError(
                f"POST {self.url}: the server redirects ({status}); set wincc.url to the "
                "address it redirects to (often the same with a trailing /)",
                status=status,
            )
        raise_for_status("POST", self.url, status, answer)
        try:
            return orjson.loads(answer)
        except orjson.JSONDecodeError as exc:
            raise WinCCProtocolError(
                f"POST {self.url}: answer is not JSON ({short_text(str(exc))})", status=status
            ) from exc

    async def _login(self) -> str:
        password = "" if self._password is None else self._password.get_secret_value()
        data = await self._post(
            q.LOGIN, {"username": self._username, "password": password}, token=None
        )
        try:
            session = _field("login", data)
        except _SessionRefused as exc:
            raise WinCCAuthError(f"{self.url}: login as {self._username!r} refused: {exc}") from exc
        if type(session) is not dict:
            raise WinCCProtocolError(f"login: the answer is {show(session)}, not a session")
        token = session.get("token")
        failure = item_error(session)
        if failure is not None or not isinstance(token, str) or not token:
            raise WinCCAuthError(
                f"{self.url}: login as {self._username!r} refused "
                f"({failure or 'no token'}); check wincc.username and the password"
            )
        user = session.get("user")
        logoff = user.get("autoLogoffSec") if type(user) is dict else None
        if isinstance(logoff, int | float) and not isinstance(logoff, bool) and logoff > 0:
            self.auto_logoff = float(logoff)
        _LOG.debug("logged in to %s as %r", self.url, self._username)
        return token


class _SessionRefused(WinCCError):
    """The request was refused for want of a valid session."""


def _field(field: str, data: Any) -> Any:
    """``data[field]`` of a GraphQL answer; its ``errors`` as a ``WinCCError``."""
    if type(data) is not dict:
        raise WinCCProtocolError(f"{field}: the answer is {show(data)}, not an object")
    errors = data.get("errors")
    result = data.get("data")
    value = result.get(field) if type(result) is dict else None
    if errors and value is None:
        text = "; ".join(_message(error) for error in errors[:3]) if type(errors) is list else ""
        text = text or short_text(errors)
        if any(word in text.lower() for word in _AUTH_WORDS):
            raise _SessionRefused(text)
        raise WinCCRejected(f"{field}: {text}")
    if type(result) is not dict or field not in result:
        raise WinCCProtocolError(f"{field}: the answer carries no data.{field}")
    return value


def _message(error: Any) -> str:
    if type(error) is dict and isinstance(error.get("message"), str):
        return short_text(error["message"])
    return short_text(error)
