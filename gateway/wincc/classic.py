"""The ``classic`` dialect: the WinCC REST service of WinCC V7.5 SP2 and V8.

Built like ``rest``, and on the same ``gateway.wincc.http``: the constructor only stores
what it is given, one private ``_request`` owns status checks and error translation, and
the public methods return the models of ``gateway.core.models``. What differs: HTTP Basic
auth on every request (there is no login to share or renew), paths under
``/WinCCRestService``, top-level JSON arrays, browsing derived from the configured tag
list, history per archive, and alarms from a message list without acknowledgement.

Public clients that ran against real servers show variations (``qualitycode`` or
``qualityCode``, an array or ``{"values": [...]}``, a 200 with an empty body for an invalid
name), so answers are parsed tolerantly (``gateway.wincc.classic_parse``). The first
answer of each kind is logged at info level as its shape (JSON types and keys, never
values), so a field report shows what a real server sends.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any, Unpack
from urllib.parse import quote, urlsplit

import aiohttp
import orjson
from pydantic import SecretStr

from gateway.core.models import Alarm, AlarmList, Reading, ReadResult, TagInfo, Value
from gateway.core.timestamps import format_ts
from gateway.core.values import short_text
from gateway.errors import (
    WinCCAuthError,
    WinCCError,
    WinCCNotFound,
    WinCCProtocolError,
    WinCCUnsupported,
)
from gateway.wincc.classic_parse import (
    EMPTY_ANSWER,
    HISTORY_PATH,
    VALUES_PATH,
    archive_map,
    build_tree,
    parse_config_page,
    parse_history_answer,
    parse_message_list,
    parse_value_answer,
    parse_values_answer,
    parse_write_answer,
)
from gateway.wincc.concurrency import read_in_chunks
from gateway.wincc.http import HttpClient, HttpOptions, raise_for_status
from gateway.wincc.shape import describe_shape
from gateway.wincc.tree import Cached

_LOG = logging.getLogger(__name__)

BASE_PATH = "/WinCCRestService"
VALUE_PATH = "/tagManagement/Value/"
VARIABLES_PATH = "/tagManagement/variables"
ARCHIVED_PATH = "/tagLogging/Variables"
MESSAGE_LIST_PATH = "/alarmLogging/MessageList/"

ACK_UNSUPPORTED = "acknowledge is not offered by the classic WinCC REST service"
CONFIG_PAGE = 1000
"""Items asked for per page of a configuration list (``itemLimit``)."""
CONFIG_TTL = 60.0
"""Seconds the tag and archive lists are reused: browsing asks for them once per folder."""


def base_url(url: str) -> str:
    """``url`` with ``/WinCCRestService`` appended when it names no path of its own."""
    url = url.rstrip("/")
    return url if urlsplit(url).path else url + BASE_PATH


class ClassicClient(HttpClient):
    """A client of one WinCC server speaking the WinCC REST service (``classic`` dialect).

    ``archive`` is the
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
        accept_language: str | None = None,
        archive: str | None = None,
        alarm_filter: str | None = None,
        **options: Unpack[HttpOptions],
    ) -> None:
        super().__init__(session, url, username, password, **options)
        self._archive = archive
        self._alarm_filter = alarm_filter
        if accept_language:
            self._headers["Accept-Language"] = accept_language
        self._tree = Cached(self._fetch_tree, CONFIG_TTL)
        self._archives = Cached(self._fetch_archives, CONFIG_TTL)
        self._came_at: dict[str, int] = {}  # alarm id -> came time, kept while it is listed
        self._shapes_seen: set[str] = set()  # kinds of answers whose shape was logged
        self._states_skipped: set[object] = set()

    # --- the API -------------------------------------------------------------------------

    async def _read_chunk(self, names: Sequence[str]) -> ReadResult:
        """One ``tagManagement/Values`` read of ``read_many``, split further if it must be."""
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
        reading = parse_write_answer(path, name, data)
        if reading is None:
            return await self.read(name)  # the answer only said that the write succeeded
        return reading

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

    # --- requests and what the log says -------------------------------------------------

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
        status, body = await self._send(
            method, path, authorization=self._basic_auth(), json=json, params=params
        )
        if status == 401:
            raise WinCCAuthError(
                f"{method} {path}: WinCC refused the user {self._username!r} (401); "
                "check wincc.username and the password",
                status=status,
            )
        return decode_answer(method, path, status, body)

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
