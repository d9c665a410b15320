"""The fault proxy itself: it forwards, a stall holds bytes back, a cut closes."""

from __future__ import annotations

import asyncio

from tests.tcp_proxy import tcp_proxy


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(1024):
        writer.write(data)
        await writer.drain()
    writer.close()


async def test_the_proxy_forwards_stalls_and_cuts() -> None:
    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server, tcp_proxy("127.0.0.1", port) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"one")
        assert await asyncio.wait_for(reader.readexactly(3), 5) == b"one"

        proxy.stall()
        writer.write(b"two")
        read = asyncio.create_task(reader.readexactly(3))
        done, _ = await asyncio.wait({read}, timeout=0.3)
        assert not done, "a stalled proxy forwarded bytes"
        proxy.resume()
        assert await asyncio.wait_for(read, 5) == b"two"

        proxy.cut()
        assert await asyncio.wait_for(reader.read(), 5) == b""
        assert proxy.connections == 1
        writer.close()
