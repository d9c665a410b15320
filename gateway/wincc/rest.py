"""The ``rest`` dialect: the WinCC REST API over an injected aiohttp session.

Shaped like python-elgato: the constructor only stores what it is given, one private
``_request`` owns authentication, status checks and error translation, and the public
methods return the plain models of ``gateway.core.models``. What every HTTP dialect
shares is in ``gateway.wincc.http``; the parsing of answers, without I/O, in
``gateway.wincc.rest_parse``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any, Unpack
from urllib.parse import quote

import aiohttp
import orjson
from pydantic import SecretStr

from gateway.core.models import Alarm, Reading, ReadResult, TagInfo, TagType, Value
from gateway.core.timestamps import format_ts
from gateway.core.values import short_text, show
from gateway.errors import WinCCAuthError, WinCCError, WinCCProtocolError
from gateway.wincc.http import HttpClient, HttpOptions, raise_for_status
from gateway.wincc.login import SharedLogin
from gateway.wincc.rest_answers import ChunkAnswers
from gateway.wincc.rest_parse import (
    LOGIN_PATH,
    parse_alarms_answer,
    parse_browse_answer,
    parse_history_page,
    parse_login_answer,
    parse_read_answer,
    parse_reading_answer,
)

_LOG = logging.getLogger(__name__)

LOGOUT_PATH = "/api/auth/logout"


def _dp_path(name: str) -> str:
    """``/api/dp/<name>`` with every odd character of the name escaped, ``/`` included."""
    return "/api/dp/" + quote(name, safe="")


class RestClient(HttpClient):
    """A client of one WinCC server speaking the ``rest`` dialect.

    Logins take a request slot like any request, and concurrent callers share one login
    (``gateway.wincc.login``).
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        username: str,
        password: SecretStr | None,
        **options: Unpack[HttpOptions],
    ) -> None:
        super().__init__(session, url, username, password, **options)
        self._auth = SharedLogin(self._login, self._url)
        self._types_seen: set[str] = set()  # unknown type names already logged
        self._answers = ChunkAnswers()

    # --- the API -------------------------------------------------------------------------

    async def _read_chunk(self, names: Sequence[str]) -> ReadResult:
        """One chunk of ``read_many``, read with a single ``POST /api/dp/read``."""
        path = "/api/dp/read"
        status, body = await self._answer("POST", path, json={"names": list(names)})
        raise_for_status("POST", path, status, body)
        parsed = self._answers.parse(names, body)
        if parsed is not None:
            return parsed
        return parse_read_answer(names, _decode("POST", path, status, body), self._memo)

    async def read(self, name: str) -> Reading:
        """Read one tag."""
        path = _dp_path(name)
        return parse_reading_answer("GET", path, await self._request("GET", path))

    async def write(self, name: str, value: Value) -> Reading:
        """Write one tag; the server answers with the reading it holds afterwards."""
        path = _dp_path(name)
        return parse_reading_answer(
            "PUT", path, await self._request("PUT", path, json={"value": value})
        )

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
        token = self._auth.forget()
        if token is None:
            return
        try:
            await self._send("POST", LOGOUT_PATH, authorization=f"Bearer {token}")
        except WinCCError as exc:
            _LOG.debug("logout from %s failed, the token will expire: %s", self._url, exc)

    # --- requests and authentication -------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        json: object = None,
        params: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """One authenticated API call: the JSON object answered, or a ``WinCCError``."""
        return _decode(method, path, *await self._answer(method, path, json, params))

    async def _answer(
        self,
        method: str,
        path: str,
        json: object = None,
        params: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        """One authenticated API call: the status and body answered.

        A 401 means the token expired or was revoked: log in again (shared with concurrent
        callers) and retry exactly once; a second 401 is an ``WinCCAuthError``.
        """
        token = await self._auth.current()
        bearer = f"Bearer {token}"
        status, body = await self._send(
            method, path, authorization=bearer, json=json, params=params
        )
        if status == 401:
            bearer = f"Bearer {await self._auth.token_after(token)}"
            status, body = await self._send(
                method, path, authorization=bearer, json=json, params=params
            )
            if status == 401:
                raise WinCCAuthError(
                    f"{method} {path}: refused (401) right after logging in again "
                    f"as {self._username!r}",
                    status=status,
                )
        return status, body

    async def _login(self) -> str:
        password = "" if self._password is None else self._password.get_secret_value()
        status, body = await self._send(
            "POST",
            LOGIN_PATH,
            authorization=None,
            json={"username": self._username, "password": password},
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
