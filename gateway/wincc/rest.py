"""The ``rest`` dialect: the WinCC REST API over an injected aiohttp session.

Shaped like python-elgato: the constructor only stores what it is given, one private
``_request`` owns authentication, status checks and error translation, and the public
methods return the plain models of ``gateway.core.models``. Bulk reads are the hot path
and are parsed with orjson straight into ``Reading`` objects.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
import orjson
from pydantic import SecretStr

from gateway.core.models import (
    Alarm,
    AlarmList,
    Reading,
    ReadResult,
    TagInfo,
    TagType,
    Value,
    tag_type_of,
)
from gateway.core.timestamps import format_ts, parse_optional_ts, parse_ts
from gateway.core.values import check_id, checked_value, short_text, show
from gateway.errors import (
    WinCCAuthError,
    WinCCError,
    WinCCNoAnswer,
    WinCCNotFound,
    WinCCProtocolError,
    WinCCRejected,
    WinCCTimeout,
    WinCCUnavailable,
)
from gateway.wincc.base import ChunkHandler
from gateway.wincc.concurrency import run_all
from gateway.wincc.memo import ReadingMemo

_LOG = logging.getLogger(__name__)
T = TypeVar("T")

LOGIN_PATH = "/api/auth/login"
LOGOUT_PATH = "/api/auth/logout"
_VALUE_TYPES = frozenset({bool, int, float, str, type(None)})
_JSON_HEADERS = {"Accept": "application/json", "Content-Type": "application/json"}


def _dp_path(name: str) -> str:
    """``/api/dp/<name>`` with every odd character of the name escaped, ``/`` included."""
    return "/api/dp/" + quote(name, safe="")


class RestClient:
    """A client of one WinCC server speaking the ``rest`` dialect.

    All requests share one semaphore of ``max_concurrency`` slots (logins included), and
    concurrent callers share one login: when many requests meet an expired token at
    once, one of them logs in and the others retry with its token.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        username: str,
        password: SecretStr | None,
        *,
        timeout: float = 5.0,
        max_concurrency: int = 8,
        batch_size: int = 1000,
        history_page: int = 1000,
    ) -> None:
        self._session = session
        self._url = url.rstrip("/")
        self._username = username
        self._password = password
        self._timeout = timeout
        self._batch_size = batch_size
        self._history_page = history_page
        self._memo = ReadingMemo()
        self._slots = asyncio.Semaphore(max_concurrency)
        self._login_lock = asyncio.Lock()
        self._token: str | None = None
        self._logins = 0  # logins finished, well or not; waiters on the lock compare it
        self._login_error: WinCCError | None = None
        self._types_seen: set[str] = set()  # unknown type names already logged

    # --- the API -------------------------------------------------------------------------

    async def read_many(
        self, names: Sequence[str], each: ChunkHandler | None = None, spread: float = 0.0
    ) -> ReadResult:
        """Read ``names`` in chunks of ``batch_size``, concurrently, merged in input order;
        ``each`` gets every chunk's result as it comes in; chunk starts are spaced evenly
        over ``spread`` seconds."""
        return await read_in_chunks(names, self._batch_size, self._read_chunk, each, spread)

    async def _read_chunk(self, names: Sequence[str]) -> ReadResult:
        data = await self._request("POST", "/api/dp/read", json={"names": list(names)})
        return parse_read_answer(names, data, self._memo)

    async def read(self, name: str) -> Reading:
        """Read one tag."""
        path = _dp_path(name)
        return _single_reading("GET", path, await self._request("GET", path))

    async def write(self, name: str, value: Value) -> Reading:
        """Write one tag; the server answers with the reading it holds afterwards."""
        path = _dp_path(name)
        return _single_reading("PUT", path, await self._request("PUT", path, json={"value": value}))

    async def active_alarms(self) -> list[Alarm]:
        """The alarms active now, as the server lists them."""
        return parse_alarms_answer(await self._request("GET", "/api/alerts/active"))

    async def acknowledge(self, alarm_id: str, comment: str | None = None) -> None:
        """Acknowledge one alarm; 404 when it is unknown or no longer active."""
        body = {} if comment is None else {"comment": comment}
        await self._request("POST", f"/api/alert/{quote(alarm_id, safe='')}/acknowledge", json=body)

    async def history(self, name: str, start_ms: int, end_ms: int) -> AsyncIterator[Reading]:
        """Archived values in [start, end], oldest first, following the cursor page by page."""
        path = "/api/history/" + quote(name, safe="")
        params = {
            "start": format_ts(start_ms),
            "end": format_ts(end_ms),
            "limit": str(self._history_page),
        }
        while True:
            data = await self._request("GET", path, params=params)
            values, cursor = parse_history_page(path, name, data)
            for reading in values:
                yield reading
            if cursor is None:
                return
            if cursor == params.get("cursor"):
                raise WinCCProtocolError(f"GET {path}: the next cursor {cursor!r} leads nowhere")
            params["cursor"] = cursor

    async def browse(self, path: str) -> list[TagInfo]:
        """The direct children of folder ``path`` (``""`` is the root), with full names."""
        if path and not path.endswith("."):
            path += "."  # the API names folders as prefixes: ``System1.``
        data = await self._request("GET", "/api/dp/browse", params={"path": path})
        children = parse_browse_answer(f"GET /api/dp/browse?path={path}", data)
        for item, child in zip(data["children"], children, strict=True):
            if child.type is TagType.UNKNOWN and str(item["type"]) not in self._types_seen:
                self._types_seen.add(str(item["type"]))
                _LOG.info(
                    "%s names the type %s, unknown to the gateway: its tags (%s first) are "
                    "published as they come and cannot be written",
                    self._url,
                    show(item["type"]),
                    child.name,
                )
        return children

    async def close(self) -> None:
        """Log out, best effort: the token dies with its TTL anyway."""
        token, self._token = self._token, None
        if token is None:
            return
        try:
            await self._send("POST", LOGOUT_PATH, token=token)
        except WinCCError as exc:
            _LOG.debug("logout from %s failed, the token will expire: %s", self._url, exc)

    # --- the one place that talks HTTP ---------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        json: object = None,
        params: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """One authenticated API call: the JSON object answered, or a ``WinCCError``.

        A 401 means the token expired or was revoked: log in again (shared with concurrent
        callers) and retry exactly once; a second 401 is an ``WinCCAuthError``.
        """
        token = self._token or await self._token_after(None)
        status, body = await self._send(method, path, json=json, params=params, token=token)
        if status == 401:
            token = await self._token_after(token)
            status, body = await self._send(method, path, json=json, params=params, token=token)
            if status == 401:
                raise WinCCAuthError(
                    f"{method} {path}: refused (401) right after logging in again "
                    f"as {self._username!r}",
                    status=status,
                )
        return _decode(method, path, status, body)

    async def _send(
        self,
        method: str,
        path: str,
        *,
        token: str | None,
        json: object = None,
        params: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        """Status and body of one exchange; transport failures become ``WinCCError``.

        The timeout starts once a slot is free, so a long queue is not mistaken for a
        slow server.
        """
        headers = dict(_JSON_HEADERS)
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        data = None if json is None else orjson.dumps(json)
        where = f"{method} {self._url}{path}"
        async with self._slots:
            try:
                async with (
                    asyncio.timeout(self._timeout),
                    self._session.request(
                        method, self._url + path, data=data, params=params, headers=headers
                    ) as response,
                ):
                    return response.status, await read_answer(response, where)
            except (TimeoutError, aiohttp.ClientError) as exc:
                raise transport_error(where, self._timeout, exc) from exc

    async def _token_after(self, stale: str | None) -> str:
        """A token other than ``stale``; callers that wait together share one login.

        Whoever takes the lock first logs in; those queued behind it take the token it
        got, or re-raise the error its login ended with, rather than try again
        themselves. A login cut short by cancellation counts for nobody.
        """
        seen = self._logins
        async with self._login_lock:
            if self._token is not None and self._token != stale:
                return self._token
            failed = self._login_error
            if self._logins != seen and failed is not None:
                raise type(failed)(str(failed), status=failed.status) from failed
            if stale is not None:
                _LOG.info("%s refused the token (expired or revoked); logging in again", self._url)
            self._token = None
            try:
                token = await self._login()
            except WinCCError as exc:
                self._logins += 1
                self._login_error = exc
                raise
            self._logins += 1
            self._token, self._login_error = token, None
            return token

    async def _login(self) -> str:
        password = "" if self._password is None else self._password.get_secret_value()
        status, body = await self._send(
            "POST", LOGIN_PATH, json={"username": self._username, "password": password}, token=None
        )
        if status in (401, 403):
            raise WinCCAuthError(
                f"{self._url}: login as {self._username!r} refused ({status}); "
                "check wincc.username and the password",
                status=status,
            )
        token = parse_login_answer(_decode("POST", LOGIN_PATH, status, body))
        _LOG.debug("logged in to %s as %r", self._url, self._username)
        return token


# --- parsing, without I/O --------------------------------------------------------------


async def read_in_chunks(
    names: Sequence[str],
    size: int,
    read_chunk: Callable[[Sequence[str]], Coroutine[Any, Any, ReadResult]],
    each: ChunkHandler | None = None,
    spread: float = 0.0,
) -> ReadResult:
    """``read_chunk`` over ``names`` in chunks of ``size``, concurrently, merged in order;
    ``each`` gets every chunk's result as soon as it is in, and chunk ``i`` of ``n``
    starts ``i * spread / n`` seconds after the first.

    Shared by the HTTP dialects: only how one chunk is asked for differs.
    """
    chunks = [names[start : start + size] for start in range(0, len(names), size)]
    if not chunks:
        return ReadResult()
    gap = spread / len(chunks)

    async def read_and_hand_on(index: int, chunk: Sequence[str]) -> ReadResult:
        if index and gap > 0:
            await asyncio.sleep(index * gap)
        part = await read_chunk(chunk)
        if each is not None:
            await each(part)
        return part

    parts = await run_all([read_and_hand_on(i, chunk) for i, chunk in enumerate(chunks)])
    if len(parts) == 1:
        return parts[0]
    merged = ReadResult()
    for part in parts:
        merged.readings.extend(part.readings)
        merged.errors.update(part.errors)
    return merged


MAX_ANSWER_BYTES = 64 * 1024 * 1024
"""Largest answer read from WinCC. A real one is far smaller (a chunk of ``batch_size``
values, a page of history); a larger one would only exhaust a small edge box's memory."""


async def read_answer(response: aiohttp.ClientResponse, where: str) -> bytes:
    """The body of ``response``, or a ``WinCCProtocolError`` once it passes
    ``MAX_ANSWER_BYTES``: refused from its Content-Length, or while it streams in."""
    declared = response.content_length
    if declared is not None and declared > MAX_ANSWER_BYTES:
        raise WinCCProtocolError(
            f"{where}: an answer of {declared} bytes, more than {MAX_ANSWER_BYTES}",
            status=response.status,
        )
    body = bytearray()
    async for chunk in response.content.iter_chunked(1 << 16):
        body += chunk
        if len(body) > MAX_ANSWER_BYTES:
            raise WinCCProtocolError(
                f"{where}: an answer of more than {MAX_ANSWER_BYTES} bytes",
                status=response.status,
            )
    return bytes(body)


def transport_error(
    where: str, timeout: float, exc: TimeoutError | aiohttp.ClientError
) -> WinCCError:
    """The ``WinCCError`` of an exchange that got no HTTP answer, for ``raise ... from exc``.

    A failure to connect means the request never went out (``WinCCUnavailable``); a
    connection that breaks afterwards leaves it open whether the server acted on it
    (``WinCCNoAnswer``).
    """
    if isinstance(exc, TimeoutError):
        return WinCCTimeout(f"{where}: no answer within {timeout:g} s")
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return WinCCError(
            f"{where}: the server's TLS certificate is not trusted "
            f"({exc.certificate_error}); set wincc.ca_file to the CA that signed it"
        )
    if isinstance(exc, aiohttp.ClientSSLError):
        return WinCCError(f"{where}: TLS handshake failed: {exc}")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return WinCCUnavailable(f"{where}: {type(exc).__name__}: {exc}")
    return WinCCNoAnswer(f"{where}: {type(exc).__name__}: {exc}")


def _decode(method: str, path: str, status: int, body: bytes) -> dict[str, Any]:
    """The JSON object of a 2xx answer; any other status as the matching ``WinCCError``."""
    raise_for_status(method, path, status, body)
    if not body.strip():
        return {}
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise WinCCProtocolError(
            f"{method} {path}: answer is not JSON ({short_text(str(exc))})", status=status
        ) from exc
    if not isinstance(data, dict):
        raise WinCCProtocolError(f"{method} {path}: answer is not a JSON object", status=status)
    return data


def raise_for_status(method: str, path: str, status: int, body: bytes) -> None:
    """Nothing for a 2xx status; any other as the matching ``WinCCError``."""
    if 200 <= status < 300:
        return
    message = f"{method} {path}: {_error_text(body) or f'HTTP {status}'} ({status})"
    if status == 404:
        raise WinCCNotFound(message, status=status)
    if status == 429 or status >= 500:
        raise WinCCUnavailable(message, status=status)
    if 400 <= status < 500:
        raise WinCCRejected(message, status=status)
    raise WinCCProtocolError(message, status=status)


def _error_text(body: bytes) -> str | None:
    """The ``error`` text of an error answer, if it carries one."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    error = data.get("error") if isinstance(data, dict) else None
    return short_text(error) if isinstance(error, str) and error else None


def parse_read_answer(
    names: Sequence[str], data: dict[str, Any], memo: ReadingMemo | None = None
) -> ReadResult:
    """Readings and per-name errors of a bulk read answer, in the server's order.

    A malformed item costs only its own name an error entry; a name the answer does not
    mention at all is an error too, so no requested tag goes silently missing. The
    ``try`` costs nothing in Python 3.11+ unless it catches, which is why the well-formed
    path needs no separate pre-check.
    """
    items = data.get("values")
    if not isinstance(items, list):
        raise WinCCProtocolError("POST /api/dp/read: the answer has no 'values' list")
    result = ReadResult()
    readings, errors = result.readings, result.errors
    wanted = set(names)
    for item in items:
        name = item.get("name") if type(item) is dict else None
        if type(name) is not str or name not in wanted or name in errors:
            continue  # cannot be attributed, or not asked for; missing names are errors below
        error = item.get("error")
        if error is not None:
            errors[name] = short_text(error)
            continue
        try:
            readings.append(_reading(name, item, memo))
        except (KeyError, TypeError, ValueError) as exc:
            errors[name] = f"malformed reading: {_why(exc)}"
    answered = {reading.name for reading in readings}  # a name listed twice counts once
    if len(answered) + len(errors) != len(wanted):
        answered.update(errors)
        for name in names:
            if name not in answered:
                errors[name] = "missing from the server's answer"
    return result


def _reading(name: str, item: dict[str, Any], memo: ReadingMemo | None = None) -> Reading:
    """A reading from one API item; ``KeyError``/``TypeError``/``ValueError`` if malformed."""
    value = item["value"]
    quality = item["quality"]
    if type(quality) is not int:
        raise TypeError(f"quality {show(quality)} is not a whole number")
    if type(value) not in _VALUE_TYPES or type(value) is str:
        value = checked_value(value)
    text = item["timestamp"]
    if memo is not None:
        return memo.reading(name, value, quality, text)
    return Reading(name, value, quality, parse_ts(text))


def _single_reading(method: str, path: str, data: dict[str, Any]) -> Reading:
    try:
        return _reading(_typed(data, "name", str), data)
    except (KeyError, TypeError, ValueError) as exc:
        raise WinCCProtocolError(f"{method} {path}: malformed reading: {_why(exc)}") from exc


def parse_login_answer(data: dict[str, Any]) -> str:
    """The token of a login answer."""
    token = data.get("token")
    if not isinstance(token, str) or not token:
        raise WinCCProtocolError(f"POST {LOGIN_PATH}: the answer carries no token")
    return token


def parse_history_page(
    path: str, name: str, data: dict[str, Any]
) -> tuple[list[Reading], str | None]:
    """The readings of one history page and the cursor to the next, if any."""
    try:
        readings = [_reading(name, _object(item)) for item in _list(data, "values")]
        cursor = data["next"]
    except (KeyError, TypeError, ValueError) as exc:
        raise WinCCProtocolError(f"GET {path}: malformed history page: {_why(exc)}") from exc
    if cursor is not None and not isinstance(cursor, str):
        raise WinCCProtocolError(f"GET {path}: the next cursor {show(cursor)} leads nowhere")
    return readings, cursor


def parse_browse_answer(where: str, data: dict[str, Any]) -> list[TagInfo]:
    """The children a browse answer lists."""
    try:
        return [_tag_info(_object(item)) for item in _list(data, "children")]
    except (KeyError, TypeError, ValueError) as exc:
        raise WinCCProtocolError(f"{where}: malformed children: {_why(exc)}") from exc


def parse_alarms_answer(data: dict[str, Any]) -> AlarmList:
    """The active alarms; an alarm that cannot be read is an error of its id only."""
    alerts = data.get("alerts")
    if not isinstance(alerts, list):
        raise WinCCProtocolError("GET /api/alerts/active: malformed alarm list: no 'alerts' list")
    alarms = AlarmList()
    for index, item in enumerate(alerts):
        try:
            alarms.append(_alarm(_object(item)))
        except (KeyError, TypeError, ValueError) as exc:
            alarm_id = item.get("id") if type(item) is dict else None
            key = str(alarm_id) if type(alarm_id) in (str, int) else f"#{index}"
            alarms.errors[key] = f"malformed alarm: {_why(exc)}"
    return alarms


def _list(data: dict[str, Any], key: str) -> list[Any]:
    found = data[key]
    if type(found) is not list:
        raise TypeError(f"{key} is {show(found)}, not a list")
    return found


def _object(item: Any) -> dict[str, Any]:
    if type(item) is not dict:
        raise TypeError(f"an item is {show(item)}, not an object")
    return item


def _alarm(item: dict[str, Any]) -> Alarm:
    alarm_id = item["id"]
    if type(alarm_id) not in (str, int):
        raise TypeError(f"id is {show(alarm_id)}, neither a string nor a number")
    state = _typed(item, "state", str)
    if state not in ("came", "went"):
        raise ValueError(f"state {show(state)} is neither 'came' nor 'went'")
    return Alarm(
        id=check_id(str(alarm_id)),
        tag=_typed(item, "tag", str),
        text=_typed(item, "text", str),
        priority=_typed(item, "priority", int),
        state=state,
        acked=_typed(item, "acked", bool),
        came_at=_ts_or_none(item, "came_at"),
        went_at=_ts_or_none(item, "went_at"),
        acked_at=_ts_or_none(item, "acked_at"),
    )


def _tag_info(item: dict[str, Any]) -> TagInfo:
    return TagInfo(
        name=_typed(item, "name", str),
        type=tag_type_of(item.get("type")),
        has_children=_typed(item, "has_children", bool),
        writable=_typed(item, "writable", bool),
    )


def _typed(item: dict[str, Any], key: str, kind: type[T]) -> T:
    """``item[key]`` if it has exactly type ``kind`` (so ``True`` is no ``int``)."""
    value = item[key]
    if type(value) is not kind:
        raise TypeError(f"{key} is {show(value)}, not of type {kind.__name__}")
    return value


def _ts_or_none(item: dict[str, Any], key: str) -> int | None:
    """An optional time of an alarm: null or the .NET minimum date mean "never"."""
    return parse_optional_ts(item[key])


def _why(exc: Exception) -> str:
    """A short reason: ``KeyError('x')`` reads as ``no 'x'``, the rest as their message."""
    return f"no {show(exc.args[0])}" if isinstance(exc, KeyError) else short_text(str(exc))
