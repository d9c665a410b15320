"""A TLS front for a local mosquitto that behaves like a cloud platform's endpoint.

It terminates TLS as the platform does (AWS IoT Core: a client certificate required, and
on port 443 only the ALPN protocol ``x-amzn-mqtt-ca``), records the SNI name and every
CONNECT it forwards (client id, user name, password: mosquitto cannot check a SAS token,
the tests check what was sent), and forwards the bytes to mosquitto, which applies the
platform's ACL and packet size.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass

from tests.conftest import TlsFiles


@dataclass(slots=True, frozen=True)
class Connect:
    """What one CONNECT packet carried."""

    protocol: int
    client_id: str
    username: str | None
    password: str | None


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, at


def _string(data: bytes, at: int) -> tuple[bytes, int]:
    length = int.from_bytes(data[at : at + 2], "big")
    return data[at + 2 : at + 2 + length], at + 2 + length


def parse_connect(body: bytes) -> Connect:
    """The variable header and payload of a CONNECT (MQTT 3.1.1 or 5)."""
    _, at = _string(body, 0)  # "MQTT"
    level, flags = body[at], body[at + 1]
    at += 4  # level, flags, keepalive
    if level == 5:
        length, at = _varint(body, at)
        at += length
    client_id, at = _string(body, at)
    if flags & 0x04:  # will
        if level == 5:
            length, at = _varint(body, at)
            at += length
        _, at = _string(body, at)
        _, at = _string(body, at)
    username = password = None
    if flags & 0x80:
        raw, at = _string(body, at)
        username = raw.decode()
    if flags & 0x40:
        raw, at = _string(body, at)
        password = raw.decode()
    return Connect(level, client_id.decode(), username, password)


class CloudFront:
    """Listens with TLS on a free loopback port and forwards MQTT to ``target_port``."""

    def __init__(
        self, tls: TlsFiles, target_port: int, *, alpn: str | None, client_cert: bool
    ) -> None:
        self.target_port = target_port
        self.port = 0
        self.connects: list[Connect] = []
        self.sni: list[str | None] = []
        self.refused: list[str] = []
        self.connected = asyncio.Condition()
        context = tls.server_context()
        if client_cert:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(tls.ca_file)
        if alpn is not None:
            context.set_alpn_protocols([alpn])
        context.sni_callback = self._sni
        self._context = context
        self._alpn = alpn
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    def _sni(self, _sock: ssl.SSLObject, name: str | None, _context: ssl.SSLContext) -> None:
        self.sni.append(name)

    async def start(self) -> None:
        """Listen; ``port`` is set once this returns."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0, ssl=self._context)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop listening and close every connection."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def wait_for_connects(self, count: int, timeout: float = 30.0) -> list[Connect]:
        """The CONNECTs forwarded, once there are ``count``."""
        async with asyncio.timeout(timeout), self.connected:
            await self.connected.wait_for(lambda: len(self.connects) >= count)
        return self.connects

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ssl_object = writer.get_extra_info("ssl_object")
        chosen = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
        if self._alpn is not None and chosen != self._alpn:
            self.refused.append(f"ALPN {chosen!r}")
            writer.transport.abort()
            return
        try:
            head = await reader.readexactly(1)
            length, raw_length = 0, b""
            for shift in range(0, 28, 7):
                byte = await reader.readexactly(1)
                raw_length += byte
                length |= (byte[0] & 0x7F) << shift
                if not byte[0] & 0x80:
                    break
            body = await reader.readexactly(length)
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except (OSError, asyncio.IncompleteReadError):
            writer.transport.abort()
            return
        async with self.connected:
            self.connects.append(parse_connect(body))
            self.connected.notify_all()
        up_writer.write(head + raw_length + body)
        self._writers.update((writer, up_writer))
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer)),
            asyncio.create_task(self._pump(up_reader, writer)),
        ]
        self._tasks.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            self._tasks.difference_update(pumps)
            for side in (writer, up_writer):
                self._writers.discard(side)
                side.transport.abort()

    @staticmethod
    async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()


@contextlib.asynccontextmanager
async def cloud_front(
    tls: TlsFiles, target_port: int, *, alpn: str | None = None, client_cert: bool = False
) -> AsyncIterator[CloudFront]:
    """A started front to mosquitto on ``target_port``, stopped on exit."""
    front = CloudFront(tls, target_port, alpn=alpn, client_cert=client_cert)
    await front.start()
    try:
        yield front
    finally:
        await front.stop()
