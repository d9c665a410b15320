"""The ``classic`` dialect: the WinCC REST service of WinCC V7.5 SP2 and V8.

Built like ``rest``, and on its shared parts: the constructor only stores what it is
given, one private ``_request`` owns timeouts, status checks and error translation, and
the public methods return the models of ``gateway.core.models``. What differs: HTTP Basic
auth on every request (there is no login to share or renew), paths under
``/WinCCRestService``, top-level JSON arrays, browsing derived from the configured tag
list, history per archive, and alarms from a message list without acknowledgement.

Public clients that ran against real servers show variations (``qualitycode`` or
``qualityCode``, an array or ``{"values": [...]}``, a 200 with an empty body for an invalid
name), so answers are parsed tolerantly: field names case-insensitively, lists wherever
they are wrapped. The first answer of each kind is logged at info level as its shape
(JSON types and keys, never values), so a field report shows what a real server sends.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar
from urllib.parse import quote, urlsplit

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
    WinCCNotFound,
    WinCCProtocolError,
    WinCCRejected,
    WinCCUnsupported,
)
from gateway.wincc.base import ChunkHandler
from gateway.wincc.memo import ReadingMemo
from gateway.wincc.rest import (
    _VALUE_TYPES,
    _why,
    raise_for_status,
    read_answer,
    read_in_chunks,
    transport_error,
)

_LOG = logging.getLogger(__name__)
T = TypeVar("T")

BASE_PATH = "/WinCCRestService"
VALUES_PATH = "/tagManagement/Values"
VALUE_PATH = "/tagManagement/Value/"
VARIABLES_PATH = "/tagManagement/variables"
HISTORY_PATH = "/tagLogging/Values"
ARCHIVED_PATH = "/tagLogging/Variables"
MESSAGE_LIST_PATH = "/alarmLogging/MessageList/"

ACK_UNSUPPORTED = "acknowledge is not offered by the classic WinCC REST service"
EMPTY_ANSWER = "WinCC answered with an empty body, as it does for a name it does not know"
CONFIG_PAGE = 1000
"""Items asked for per page of a configuration list (``itemLimit``)."""
CONFIG_TTL = 60.0
"""Seconds the tag and archive lists are reused: browsing asks for them once per folder."""

DATA_TYPES: dict[int, TagType] = {
    1: TagType.BOOL,  # binary tag
    2: TagType.INT,  # signed 8-bit
    3: TagType.INT,  # unsigned 8-bit
    4: TagType.INT,  # signed 16-bit
    5: TagType.INT,  # unsigned 16-bit
    6: TagType.INT,  # signed 32-bit
    7: TagType.INT,  # unsigned 32-bit
    8: TagType.FLOAT,  # floating-point 32-bit
    9: TagType.FLOAT,  # floating-point 64-bit
    10: TagType.STRING,  # text, 8-bit character set
    11: TagType.STRING,  # text, 16-bit character set
}
"""WinCC ``dataType`` codes -> tag types, taken from the ``DM_VARTYPE_*`` constants of the
WinCC ODK; to be confirmed against a real REST service. Raw data, arrays, structures and
bit fields (12 and up) have no tag type: browse lists them as of unknown type and they
are not polled."""

MESSAGE_STATES: dict[int, tuple[str, bool]] = {
    0x01: ("came", False),
    0x02: ("went", False),
    0x03: ("came", True),  # acknowledged; a message that went and was acknowledged is gone
    0x10: ("came", True),  # acknowledged by the system
    0x11: ("came", True),  # emergency acknowledgement
    0x12: ("came", True),  # acknowledged at the horn
    0x13: ("went", False),  # came and went before anyone saw it
}
"""Message state codes -> (state, acknowledged), after the ``MSG_STATE_*`` constants of the
WinCC ODK; to be confirmed against a real REST service. Other codes (locked, hidden, ...)
are not alarms the gateway tracks: such messages are skipped and logged once per code."""

_STATE_WORDS: dict[str, tuple[str, bool]] = {
    "came": ("came", False),
    "came in": ("came", False),
    "come": ("came", False),
    "raised": ("came", False),
    "went": ("went", False),
    "went out": ("went", False),
    "gone": ("went", False),
    "cleared": ("went", False),
    "acknowledged": ("came", True),
    "acked": ("came", True),
    "quit": ("came", True),
}
"""The same states as texts, for servers that name them."""

SHAPE_KEYS = 30  # keys shown per object when logging the shape of an answer
SHAPE_ITEMS = 20  # list items sampled for it
SHAPE_DEPTH = 4
_JSON_TYPES = {type(None): "null", bool: "bool", int: "int", float: "float", str: "str"}


def base_url(url: str) -> str:
    """``url`` with ``/WinCCRestService`` appended when it names no path of its own."""
    url = url.rstrip("/")
    return url if urlsplit(url).path else url + BASE_PATH


class _Cached(Generic[T]):
    """A value fetched on first use, shared by concurrent callers, kept for ``ttl`` seconds."""

    def __init__(self, fetch: Callable[[], Awaitable[T]], ttl: float) -> None:
        self._fetch = fetch
        self._ttl = ttl
        self._lock = asyncio.Lock()
        self._value: T | None = None
        self._expires = 0.0

    async def get(self) -> T:
        """The value, fetched again once it is older than ``ttl``."""
        async with self._lock:
            loop = asyncio.get_running_loop()
            if self._value is None or loop.time() >= self._expires:
                self._value = await self._fetch()
                self._expires = loop.time() + self._ttl
            return self._value


class ClassicClient:
    """A client of one WinCC server speaking the WinCC REST service (``classic`` dialect).

    All requests share one semaphore of ``max_concurrency`` slots. ``archive`` is the
    process value archive of tags that ``tagLogging/Variables`` does not list;
    ``alarm_filter`` the REST filter whose message list holds the active alarms.
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
        accept_language: str | None = None,
        archive: str | None = None,
        alarm_filter: str | None = None,
    ) -> None:
        self._session = session
        self._url = url.rstrip("/")
        self._username = username
        self._password = password
        self._timeout = timeout
        self._batch_size = batch_size
        self._history_page = history_page
        self._archive = archive
        self._alarm_filter = alarm_filter
        self._headers = {"Accept": "application/json", "Content-Type": "application/json"}
        if accept_language:
            self._headers["Accept-Language"] = accept_language
        self._slots = asyncio.Semaphore(max_concurrency)
        self._memo = ReadingMemo()
        self._tree = _Cached(self._fetch_tree, CONFIG_TTL)
        self._archives = _Cached(self._fetch_archives, CONFIG_TTL)
        self._came_at: dict[str, int] = {}  # alarm id -> came time, kept while it is listed
        self._shapes_seen: set[str] = set()  # kinds of answers whose shape was logged
        self._states_skipped: set[object] = set()

    # --- the API -------------------------------------------------------------------------

    async def read_many(
        self, names: Sequence[str], each: ChunkHandler | None = None, spread: float = 0.0
    ) -> ReadResult:
        """Read ``names`` in chunks of ``batch_size``, concurrently, merged in input order;
        ``each`` gets every chunk's result as it comes in; chunk starts are spaced evenly
        over ``spread`` seconds."""
        return await read_in_chunks(names, self._batch_size, self._read_chunk, each, spread)

    async def _read_chunk(self, names: Sequence[str]) -> ReadResult:
        data = await self._request("POST", VALUES_PATH, json={"variableNames": list(names)})
        self._note_shape("POST tagManagement/Values", data)
        if data is not None:
            return parse_values_answer(names, data, self._memo)
        if len(names) == 1:
            return ReadResult(errors={names[0]: EMPTY_ANSWER})
        # Some invalid name emptied the whole answer: halve the chunk until it is found,
        # so the valid names are still read (a few requests per invalid name).
        return await read_in_chunks(names, (len(names) + 1) // 2, self._read_chunk)

    async def read(self, name: str) -> Reading:
        """Read one tag."""
        path = VALUE_PATH + quote(name, safe="")
        data = await self._request("GET", path)
        self._note_shape("GET tagManagement/Value", data)
        return parse_value_answer("GET", path, name, data)

    async def write(self, name: str, value: Value) -> Reading:
        """Write one tag; the reading comes from the answer, or is read back if it has none."""
        path = VALUE_PATH + quote(name, safe="")
        data = await self._request("PUT", path, json={"value": value})
        self._note_shape("PUT tagManagement/Value", data)
        fields = _single_item("PUT", path, data)
        try:
            return _reading(name, fields)
        except (KeyError, TypeError, ValueError):
            return await self.read(name)  # the answer only said that the write succeeded

    async def active_alarms(self) -> list[Alarm]:
        """The messages of the configured filter's message list, as alarms."""
        if not self._alarm_filter:
            raise WinCCError("active alarms of the classic dialect need wincc.alarm_filter")
        path = MESSAGE_LIST_PATH + quote(self._alarm_filter, safe="")
        data = await self._request("GET", path)
        self._note_shape("GET alarmLogging/MessageList", data)
        listed, skipped = parse_message_list(f"GET {path}", data)
        for state in skipped:
            self._skip_state(state)
        alarms = AlarmList()
        alarms.errors = listed.errors
        for alarm in listed:
            came_at = self._came_at.get(alarm.id)
            if alarm.came_at is None and came_at is not None:
                alarm = dataclasses.replace(alarm, came_at=came_at)  # noqa: PLW2901
            alarms.append(alarm)
        # The list carries one time per message, that of its last change: remember when
        # each alarm came, so an acknowledged or gone alarm keeps its came_at.
        self._came_at = {a.id: a.came_at for a in alarms if a.came_at is not None}
        return alarms

    async def acknowledge(self, alarm_id: str, comment: str | None = None) -> None:
        """Always refused: the REST service has no acknowledge endpoint."""
        raise WinCCUnsupported(ACK_UNSUPPORTED)

    async def history(self, name: str, start_ms: int, end_ms: int) -> AsyncIterator[Reading]:
        """Archived values in [start, end], oldest first, ``history_page`` per request.

        The service pages by time only, so each request starts at the last time seen and
        skips the values of that time it has already given. Paging ends on a page with
        nothing new, not on a short page: a server may give fewer values than asked for.
        """
        archive, archived = await self._archive_of(name)
        since, repeated = start_ms, 0  # values at ``since`` already yielded
        while True:
            variable = {
                "name": archived,
                "timeFrom": format_ts(since),
                "timeTo": format_ts(end_ms),
                "maxValues": self._history_page,
            }
            body = {"archives": [{"name": archive, "variables": [variable]}]}
            data = await self._request("POST", HISTORY_PATH, json=body)
            self._note_shape("POST tagLogging/Values", data)
            page = parse_history_answer(name, archived, data)
            skip = 0
            while skip < min(repeated, len(page)) and page[skip].ts_ms == since:
                skip += 1
            fresh = page[skip:]
            if not fresh:
                if len(page) < self._history_page:
                    return
                raise WinCCProtocolError(
                    f"POST {HISTORY_PATH}: more than {self._history_page} values of {name} "
                    f"at {format_ts(since)}; cannot page past them"
                )
            for reading in fresh:
                yield reading
            last = fresh[-1].ts_ms
            repeated = (repeated if last == since else 0) + sum(
                1 for reading in fresh if reading.ts_ms == last
            )
            since = last

    async def browse(self, path: str) -> list[TagInfo]:
        """The direct children of ``path`` in the tree of dotted names of the tag list."""
        tree = await self._tree.get()
        children = tree.get(path.removesuffix("."))
        if children is None:
            raise WinCCNotFound(f"{VARIABLES_PATH}: no tag names start with {path!r}")
        return list(children)

    async def close(self) -> None:
        """Nothing to release: Basic auth keeps no session, and the HTTP session is lent."""

    # --- configuration lists -------------------------------------------------------------

    async def _fetch_tree(self) -> dict[str, list[TagInfo]]:
        return build_tree(await self._config_list(VARIABLES_PATH))

    async def _fetch_archives(self) -> dict[str, tuple[str, str]]:
        try:
            items = await self._config_list(ARCHIVED_PATH)
        except WinCCNotFound:
            _LOG.info("%s lists no archived tags; history uses wincc.archive", self._url)
            return {}
        return archive_map(items)

    async def _archive_of(self, name: str) -> tuple[str, str]:
        """The archive holding ``name`` and the name of its archive tag there."""
        found = (await self._archives.get()).get(name)
        if found is not None:
            return found
        if self._archive:
            return self._archive, name
        raise WinCCNotFound(
            f"no archive of {name}: {ARCHIVED_PATH} does not list it and wincc.archive is not set"
        )

    async def _config_list(self, path: str) -> list[dict[str, Any]]:
        """Every item of a configuration list, page by page.

        An object answer carries its ``continuationPoint``; a bare array carries none, so
        a full page of one is continued at its offset, as public clients page.
        """
        items: list[dict[str, Any]] = []
        params = {"itemLimit": str(CONFIG_PAGE)}
        first: dict[str, Any] | None = None  # of the last bare-array page
        while True:
            data = await self._request("GET", path, params=params)
            self._note_shape(f"GET {path.lstrip('/')}", data)
            page, point = parse_config_page(f"GET {path}", data)
            if point is None and isinstance(data, list) and len(page) == CONFIG_PAGE:
                if page[0] == first:
                    raise WinCCProtocolError(
                        f"GET {path}: the server ignores continuationPoint; "
                        f"only the first {CONFIG_PAGE} items can be read"
                    )
                first = page[0]
                point = str(len(items) + len(page))
            items.extend(page)
            if point is None:
                return items
            if params.get("continuationPoint") == point:
                raise WinCCProtocolError(f"GET {path}: continuation point {point!r} repeats")
            params["continuationPoint"] = point

    # --- the one place that talks HTTP ---------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: object = None,
        params: dict[str, str] | None = None,
    ) -> Any:
        """One call of the REST service: the decoded JSON, ``None`` for an empty body.

        Credentials travel with every request, so a 401 means they are refused as such.
        """
        status, body = await self._send(method, path, json, params)
        if status == 401:
            raise WinCCAuthError(
                f"{method} {path}: WinCC refused the user {self._username!r} (401); "
                "check wincc.username and the password",
                status=status,
            )
        return decode_answer(method, path, status, body)

    async def _send(
        self, method: str, path: str, json: object, params: dict[str, str] | None
    ) -> tuple[int, bytes]:
        """Status and body of one exchange; transport failures become ``WinCCError``."""
        headers = {**self._headers, "Authorization": self._basic_auth()}
        data = None if json is None else orjson.dumps(json)
        where = f"{method} {self._url}{path}"
        async with self._slots:
            try:
                async with (
                    asyncio.timeout(self._timeout),
                    self._session.request(
                        method,
                        self._url + path,
                        data=data,
                        params=params,
                        headers=headers,
                    ) as response,
                ):
                    return response.status, await read_answer(response, where)
            except (TimeoutError, aiohttp.ClientError) as exc:
                raise transport_error(where, self._timeout, exc) from exc

    def _basic_auth(self) -> str:
        """The Authorization value, made per request so no object holds it (RFC 7617, UTF-8)."""
        password = "" if self._password is None else self._password.get_secret_value()
        pair = f"{self._username}:{password}".encode()
        return "Basic " + base64.b64encode(pair).decode("ascii")

    def _note_shape(self, what: str, data: Any) -> None:
        """Log once per kind of answer how it is built (an empty one apart), for field reports."""
        seen = what if data is not None else what + " (empty)"
        if seen not in self._shapes_seen:
            self._shapes_seen.add(seen)
            shape = "an empty body" if data is None else describe_shape(data)
            _LOG.info("WinCC REST service: %s answers %s", what, shape)

    def _skip_state(self, state: object) -> None:
        if state not in self._states_skipped:
            self._states_skipped.add(state)
            _LOG.info("message list: skipping messages in state %r, not an active alarm", state)


# --- parsing, without I/O --------------------------------------------------------------


def _lower(item: dict[str, Any]) -> dict[str, Any]:
    """``item`` with its keys in lower case: servers differ in the case of field names."""
    return {key.lower(): value for key, value in item.items()}


def _first(fields: dict[str, Any], *keys: str) -> Any:
    """The value of the first of ``keys`` present and not null in ``fields``."""
    for key in keys:
        value = fields.get(key)
        if value is not None:
            return value
    return None


def _items(data: Any, keys: tuple[str, ...]) -> list[dict[str, Any]]:
    """The objects of a list answer, keys lowered: a bare array, or one under ``keys``."""
    items = data
    if isinstance(data, dict):
        fields = _lower(data)
        items = next((fields[key] for key in keys if isinstance(fields.get(key), list)), None)
    if not isinstance(items, list):
        raise TypeError(f"neither an array nor an object with one of {list(keys)}")
    lowered = []
    for item in items:
        if not isinstance(item, dict):
            raise TypeError(f"an item is {type(item).__name__}, not an object")
        lowered.append(_lower(item))
    return lowered


def decode_answer(method: str, path: str, status: int, body: bytes) -> Any:
    """The JSON of a 2xx answer, ``None`` for an empty body; any other status as the
    matching ``WinCCError``."""
    raise_for_status(method, path, status, body)
    if not body.strip():
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise WinCCProtocolError(
            f"{method} {path}: answer is not JSON ({short_text(str(exc))})", status=status
        ) from exc


def parse_value_answer(method: str, path: str, name: str, data: Any) -> Reading:
    """The reading of a single-tag answer."""
    fields = _single_item(method, path, data)
    try:
        return _reading(name, fields)
    except (KeyError, TypeError, ValueError) as exc:
        raise WinCCProtocolError(f"{method} {path}: malformed reading: {_why(exc)}") from exc


def _single_item(method: str, path: str, data: Any) -> dict[str, Any]:
    """The one item of a single-tag answer (an object, or a list of one); item errors raise."""
    if data is None:
        raise WinCCNotFound(f"{method} {path}: {EMPTY_ANSWER}")
    fields = _lower(data) if isinstance(data, dict) else {}
    if not fields or isinstance(fields.get("values"), list):
        try:
            fields = _items(data, ("values",))[0]
        except (IndexError, TypeError) as exc:
            raise WinCCProtocolError(f"{method} {path}: no item in the answer ({exc})") from exc
    failure = item_failure(fields)
    if failure is not None:
        raise WinCCRejected(f"{method} {path}: {failure}")
    return fields


def item_failure(fields: dict[str, Any]) -> str | None:
    """Why an item failed (a non-empty ``error``, an ``errorcode`` other than 0), or None."""
    error = fields.get("error")
    text = short_text(error.strip()) if isinstance(error, str) else ""
    code = fields.get("errorcode")
    failed = type(code) in (int, float, str, bool) and code not in (0, "0", "")
    if type(code) in (list, dict):
        failed, code = True, show(code)
    elif type(code) is str:
        code = short_text(code)
    if text and failed:
        return f"{text} (errorcode {code})"
    if failed:
        return f"errorcode {code}"
    return text or None


def _reading(name: str, fields: dict[str, Any], memo: ReadingMemo | None = None) -> Reading:
    """A reading from one item with lowered keys; ``KeyError``/``TypeError``/``ValueError``."""
    value = fields["value"]
    quality = fields.get("qualitycode", fields.get("quality"))
    if quality is None:
        raise KeyError("qualitycode")
    if type(quality) is not int:
        raise TypeError(f"quality {show(quality)} is not a whole number")
    if type(value) not in _VALUE_TYPES or type(value) is str:
        value = checked_value(value)
    if memo is not None:
        return memo.reading(name, value, quality, fields["timestamp"])
    return Reading(name, value, quality, parse_ts(fields["timestamp"]))


def parse_values_answer(
    names: Sequence[str], data: Any, memo: ReadingMemo | None = None
) -> ReadResult:
    """Readings and per-name errors of a ``tagManagement/Values`` answer.

    Items are matched to ``names`` by ``variableName``, exactly or else ignoring case (the
    server may spell a name its own way); names without an item are errors too.
    """
    try:
        items = _items(data, ("values", "variables"))
    except TypeError as exc:
        raise WinCCProtocolError(f"POST {VALUES_PATH}: {exc}") from exc
    result = ReadResult()
    readings, errors = result.readings, result.errors
    wanted = set(names)
    folded: dict[str, str] | None = None
    for fields in items:
        name = fields.get("variablename")
        if type(name) is not str:
            continue  # cannot be attributed; its name is reported missing below
        if name not in wanted:
            if folded is None:
                folded = {wanted_name.casefold(): wanted_name for wanted_name in names}
            name = folded.get(name.casefold())
            if name is None:
                continue
        failure = item_failure(fields)
        if failure is not None:
            errors[name] = failure
            continue
        try:
            readings.append(_reading(name, fields, memo))
        except (KeyError, TypeError, ValueError) as exc:
            errors[name] = f"malformed reading: {_why(exc)}"
    answered = {reading.name for reading in readings}  # a name listed twice counts once
    if len(answered) + len(errors) != len(wanted):
        answered.update(errors)
        for name in names:
            if name not in answered:
                errors[name] = "missing from the server's answer"
    return result


def parse_history_answer(name: str, archived: str, data: Any) -> list[Reading]:
    """The readings of tag ``name`` (archive tag ``archived``) in a ``tagLogging/Values``
    answer, oldest first.

    Accepted: the request's shape echoed (archives holding variables holding ``values``),
    a list of variables, or the values bare; any ``error`` in it fails the request.
    """
    where = f"POST {HISTORY_PATH}"
    if data is None:
        raise WinCCProtocolError(f"{where}: {EMPTY_ANSWER}")
    values = _history_values(where, (archived, name), data)
    try:
        readings = [_reading(name, _lower(item)) for item in values]
    except (KeyError, TypeError, ValueError) as exc:
        raise WinCCProtocolError(f"{where}: malformed value of {name}: {_why(exc)}") from exc
    readings.sort(key=lambda reading: reading.ts_ms)
    return readings


def _is_value(item: Any) -> bool:
    return isinstance(item, dict) and "value" in _lower(item)


def _history_values(where: str, names: tuple[str, str], data: Any) -> list[dict[str, Any]]:
    """The value items of the variable called one of ``names`` (or of no name)."""
    if isinstance(data, list) and all(_is_value(item) for item in data):
        return data
    pending = [data]
    while pending:
        node = pending.pop()
        if isinstance(node, list):
            pending.extend(reversed(node))
            continue
        if not isinstance(node, dict):
            continue
        fields = _lower(node)
        failure = item_failure(fields)
        if failure is not None:
            raise WinCCRejected(f"{where}: {failure}")
        values = fields.get("values")
        label = _first(fields, "variablename", "name")
        if (
            isinstance(values, list)
            and all(_is_value(item) for item in values)
            and (label is None or label in names)
        ):
            return values
        pending.extend(
            reversed([v for k, v in fields.items() if k != "values" and isinstance(v, list | dict)])
        )
    raise WinCCProtocolError(f"{where}: no values of {names[0]} in the answer")


def parse_config_page(where: str, data: Any) -> tuple[list[dict[str, Any]], str | None]:
    """The items of one page of a configuration list and its continuation point, if any."""
    try:
        items = _items(data, ("variables", "values", "items"))
    except TypeError as exc:
        raise WinCCProtocolError(f"{where}: {exc}") from exc
    point = _lower(data).get("continuationpoint") if isinstance(data, dict) else None
    if point in (None, "", 0) or isinstance(point, bool):
        return items, None
    if type(point) not in (str, int, float) or len(str(point)) > 1000:
        raise WinCCProtocolError(f"{where}: continuationPoint is {show(point)}, not a text")
    return items, str(point)


def build_tree(items: list[dict[str, Any]]) -> dict[str, list[TagInfo]]:
    """Folders (``""`` the root) and their children, from the dotted names of the tag list.

    A structure instance ``Tank1`` with members ``Tank1.Level`` becomes a folder; a tag
    whose name is also a prefix is a tag with children. Every tag counts as writable: the
    list does not say otherwise, and WinCC checks the user's rights when writing.
    """
    folders: dict[str, dict[str, TagInfo]] = {"": {}}
    for fields in items:
        name = _first(fields, "name", "variablename")
        if not isinstance(name, str) or not name:
            continue
        tag_type = _data_type(fields.get("datatype"))
        parent = ""
        levels = name.split(".")
        for depth in range(1, len(levels)):
            folder = ".".join(levels[:depth])
            siblings = folders[parent]
            known = siblings.get(folder)
            if known is None:
                siblings[folder] = TagInfo(folder, None, has_children=True, writable=False)
            elif not known.has_children:
                siblings[folder] = dataclasses.replace(known, has_children=True)
            folders.setdefault(folder, {})
            parent = folder
        known = folders[parent].get(name)
        folders[parent][name] = TagInfo(
            name, tag_type, has_children=known is not None and known.has_children, writable=True
        )
    return {folder: list(children.values()) for folder, children in folders.items()}


def archive_map(items: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """Process tag -> (archive, archive tag) from the items of ``tagLogging/Variables``."""
    found: dict[str, tuple[str, str]] = {}
    for fields in items:
        archive = _first(fields, "archivename", "archive")
        archived = _first(fields, "name", "variablename")
        process = _first(fields, "processvariable", "processvariablename", "processtagname")
        if isinstance(archive, str) and isinstance(archived, str):
            found.setdefault(process if isinstance(process, str) else archived, (archive, archived))
    return found


def parse_message(fields: dict[str, Any]) -> Alarm | None:
    """An alarm from one message (keys lowered); None for a state that is no alarm's.

    The message's time is that of its current state, so it fills ``came_at``,
    ``went_at`` or ``acked_at`` by state. Raises ``KeyError``/``TypeError``/``ValueError``
    for a message that cannot be read at all.
    """
    number = _first(fields, "messagenumber", "msgno", "number", "alarmnumber", "id")
    if number is None:
        raise KeyError("messageNumber")
    if type(number) not in (int, str) or number == "":
        raise TypeError(f"message number {show(number)} is neither a number nor a text")
    instance = fields.get("instance")
    alarm_id = check_id(
        f"{number}:{instance}" if isinstance(instance, str) and instance else str(number)
    )
    state = _message_state(fields.get("state"))
    if state is None:
        return None
    kind, acked = state
    flag = _first(fields, "acknowledged", "acked")
    acked_by_state = acked
    if isinstance(flag, bool):
        acked = flag
    stamp = _first(fields, "timestamp", "datetime", "time")
    at = parse_optional_ts(stamp)
    priority = fields.get("priority")
    tag = _first(fields, "alarmtag", "variablename", "tagname", "tag")
    return Alarm(
        id=alarm_id,
        tag=_text("tag", tag),
        text=_text("text", _first(fields, "text1", "text", "messagetext", "infotext")),
        priority=priority if type(priority) is int else 0,
        state=kind,
        acked=acked,
        came_at=at if kind == "came" and not acked_by_state else None,
        went_at=at if kind == "went" else None,
        acked_at=at if acked_by_state else None,
    )


def _text(what: str, value: object) -> str:
    """A text field of a message; a number is taken as its text."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    raise TypeError(f"{what} is {show(value)}, not a text")


def _data_type(code: object) -> TagType | None:
    """The tag type of a ``dataType``: a WinCC code, or a name as some servers give it."""
    if type(code) is int:
        return DATA_TYPES.get(code)
    if isinstance(code, str) and code.strip().isdecimal() and len(code) < 10:
        return DATA_TYPES.get(int(code))
    return tag_type_of(code) if isinstance(code, str) else None


def parse_message_list(where: str, data: Any) -> tuple[AlarmList, list[object]]:
    """The alarms of a message list, and the states of the messages that are no alarms.

    A message that cannot be read is an error of its number only.
    """
    if data is None:
        raise WinCCProtocolError(f"{where}: empty answer; is the REST filter defined?")
    try:
        messages = _items(data, ("messages", "values", "items"))
    except TypeError as exc:
        raise WinCCProtocolError(f"{where}: malformed message list: {exc}") from exc
    alarms, skipped = AlarmList(), list[object]()
    for index, fields in enumerate(messages):
        try:
            alarm = parse_message(fields)
        except (KeyError, TypeError, ValueError) as exc:
            number = _first(fields, "messagenumber", "msgno", "number", "alarmnumber", "id")
            instance = fields.get("instance")
            if type(number) not in (int, str) or number == "":
                key = f"#{index}"
            elif isinstance(instance, str) and instance:
                key = f"{number}:{instance}"
            else:
                key = str(number)
            alarms.errors[key] = f"malformed message: {_why(exc)}"
            continue
        if alarm is None:
            state = fields.get("state")
            skipped.append(state if type(state) is int else short_text(state))
            continue
        alarms.append(alarm)
    return alarms, skipped


def _message_state(state: object) -> tuple[str, bool] | None:
    if type(state) is int:
        return MESSAGE_STATES.get(state)
    if isinstance(state, str):
        if state.strip().isdecimal():
            return MESSAGE_STATES.get(int(state))
        return _STATE_WORDS.get(state.strip().lower())
    raise TypeError(f"state {show(state)} is neither a code nor a text")


def describe_shape(data: Any, depth: int = 0) -> str:
    """How ``data`` is built, without its values: JSON types, and the keys of objects.

    The items of a list are merged into one description (types joined with ``|``).
    """
    if isinstance(data, list):
        if not data:
            return "[]"
        if depth >= SHAPE_DEPTH * 4:
            return "[...]"  # lists of lists are shown further down, but not without end
        sample = data[:SHAPE_ITEMS]
        if all(isinstance(item, dict) for item in sample) and depth < SHAPE_DEPTH:
            merged: dict[str, set[str]] = {}
            for item in sample:
                for key, value in item.items():
                    merged.setdefault(key, set()).add(describe_shape(value, depth + 1))
            inner = _fields_text({key: " | ".join(sorted(kinds)) for key, kinds in merged.items()})
        else:
            inner = " | ".join(sorted({describe_shape(item, depth + 1) for item in sample}))
        return f"[{len(data)} x {inner}]"
    if isinstance(data, dict):
        if depth >= SHAPE_DEPTH:
            return "{...}"
        return _fields_text({key: describe_shape(value, depth + 1) for key, value in data.items()})
    return _JSON_TYPES.get(type(data), type(data).__name__)


def _fields_text(fields: dict[str, str]) -> str:
    shown = sorted(fields.items())[:SHAPE_KEYS]
    more = ", ..." if len(fields) > SHAPE_KEYS else ""
    return "{" + ", ".join(f"{key}: {kind}" for key, kind in shown) + more + "}"
