"""A real three-node NATS cluster with JetStream and its MQTT listener (MQTT 3.1.1, QoS 0
and 1), on loopback ports of its own, for the broker-cluster tests."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest

from tests.conftest import free_port


def nats_binary() -> str:
    """nats-server from PATH or Debian's /usr/sbin."""
    found = shutil.which("nats-server") or shutil.which("nats-server", path="/usr/sbin")
    if found is None:
        pytest.fail("nats-server is not installed: apt-get install -y nats-server")
    return found


class NatsNode:
    """One node of the cluster; ``port`` and ``url`` are its MQTT listener's."""

    tls = None

    def __init__(self, name: str, folder: Path) -> None:
        self.name = name
        self.folder = folder
        self.port = free_port()
        self.client_port = free_port()
        self.route_port = free_port()
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def config(self, routes: list[int]) -> str:
        route_urls = ", ".join(f'"nats-route://127.0.0.1:{port}"' for port in routes)
        return (
            f"server_name: {self.name}\n"
            f"listen: 127.0.0.1:{self.client_port}\n"
            f'jetstream {{ store_dir: "{self.folder / "js"}" }}\n'
            f"cluster {{ name: gateway-test, listen: 127.0.0.1:{self.route_port}, "
            f"routes: [{route_urls}] }}\n"
            f"mqtt {{ listen: 127.0.0.1:{self.port} }}\n"
        )

    async def start(self, routes: list[int]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        config = self.folder / "nats.conf"
        config.write_text(self.config(routes), encoding="utf-8")
        with (self.folder / "nats.log").open("ab") as log:  # the node keeps its own copy
            self.process = await asyncio.create_subprocess_exec(
                nats_binary(),
                "-c",
                str(config),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=log,
            )

    async def kill(self) -> None:
        """SIGKILL, as in a power cut of the node."""
        process, self.process = self.process, None
        if process is not None and process.returncode is None:
            process.kill()
            await process.wait()

    async def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.returncode is None:
            process.terminate()
            await process.wait()


async def mqtt_answers(node: NatsNode) -> bool:
    """The node takes an MQTT connection and a QoS 1 publish (JetStream is ready)."""
    try:
        async with aiomqtt.Client(
            "127.0.0.1", node.port, protocol=aiomqtt.ProtocolVersion.V311, timeout=5
        ) as client:
            await client.publish("probe/ready", b"1", qos=1, timeout=5)
    except aiomqtt.MqttError:
        return False
    return True


@contextlib.asynccontextmanager
async def nats_cluster(folder: Path) -> AsyncIterator[list[NatsNode]]:
    """Three clustered nodes, every one answering MQTT before the block runs."""
    nodes = [NatsNode(f"n{i}", folder / f"n{i}") for i in (1, 2, 3)]
    routes = [node.route_port for node in nodes]
    try:
        for node in nodes:
            await node.start(routes)
        async with asyncio.timeout(60):
            for node in nodes:
                # JetStream elects its leaders first; nothing to await but a retry.
                while not await mqtt_answers(node):  # noqa: ASYNC110
                    await asyncio.sleep(0.5)
        yield nodes
    finally:
        for node in nodes:
            await node.stop()
