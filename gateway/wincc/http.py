"""What the HTTP dialects share: the client's plumbing, bounded answers, error translation.

``HttpClient`` holds what every dialect's client is given, sends one exchange within a
request slot and a timeout, and reads many tags in concurrent chunks. A dialect subclasses
it with its own requests, authentication and parsing: how one chunk is read
(``_read_chunk``), and what a status or a body means beyond the common translation here.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TypedDict

import aiohttp
import orjson
from pydantic import SecretStr

from gateway.core.models import ReadResult
from gateway.core.values import short_text
from gateway.errors import (
    WinCCError,
    WinCCNoAnswer,
    WinCCNotFound,
    WinCCProtocolError,
    WinCCRejected,
    WinCCTimeout,
    WinCCUnavailable,
)
from gateway.wincc.concurrency import read_in_chunks
from gateway.wincc.memo import ReadingMemo

JSON_HEADERS = {"Accept": "application/json", "Content-Type": "application/json"}

MAX_ANSWER_BYTES = 64 * 1024 * 1024
"""Largest answer read from WinCC. A real one is far smaller (a chunk of ``batch_size``
values, a page of history); a larger one would only exhaust a small edge box's memory."""


class HttpOptions(TypedDict, total=False):
    """The keyword settings of ``HttpClient``, for dialects that take them on unchanged."""

    timeout: float
    max_concurrency: int
    batch_size: int
    history_page: int


class HttpClient(ABC):
    """The part of a WinCC client that every HTTP dialect has in common.

    All requests share one semaphore of ``max_concurrency`` slots, so the server sees no
    more than that many at once whatever the number of callers.
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
        self._headers = dict(JSON_HEADERS)
        self._slots = asyncio.Semaphore(max_concurrency)
        self._memo = ReadingMemo()

    @property
    def batch_size(self) -> int:
        """Tag names per bulk read request."""
        return self._batch_size

    async def read_many(self, names: Sequence[str]) -> ReadResult:
        """Read ``names`` in requests of ``batch_size``, concurrently, merged in input order."""
        return await read_in_chunks(names, self._batch_size, self._read_chunk)

    @abstractmethod
    async def _read_chunk(self, names: Sequence[str]) -> ReadResult:
        """Read one chunk of at most ``batch_size`` names, the way the dialect does."""

    async def _send(
        self,
        method: str,
        path: str,
        *,
        authorization: str | None,
        json: object = None,
        params: dict[str, str] | None = None,
        follow_redirects: bool = True,
    ) -> tuple[int, bytes]:
        """Status and body of one exchange; transport failures become ``WinCCError``.

        The timeout starts once a slot is free, so a long queue is not mistaken for a
        slow server. Without ``follow_redirects`` a redirect is answered as it is (a POST
        that follows one may arrive as a GET elsewhere).
        """
        headers = dict(self._headers)
        if authorization is not None:
            headers["Authorization"] = authorization
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
                        allow_redirects=follow_redirects,
                    ) as response,
                ):
                    return response.status, await read_answer(response, where)
            except (TimeoutError, aiohttp.ClientError) as exc:
                raise transport_error(where, self._timeout, exc) from exc


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
