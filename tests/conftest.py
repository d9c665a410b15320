"""Real parts for the tests: a mosquitto per test on a free port, TLS material from trustme,
the simulator over HTTPS, and an MQTT subscriber that awaits what it expects."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import shutil
import signal
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import aiomqtt
import orjson
import pytest
import trustme

from gateway.simulator.server import Simulator, SimulatorOptions


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def mosquitto_binary() -> str:
    """mosquitto from PATH or Debian's /usr/sbin."""
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin")
    if found is None:
        pytest.fail("mosquitto is not installed: apt-get install -y mosquitto")
    return found


@dataclass
class TlsFiles:
    """PEM files made by trustme for one test."""

    ca: trustme.CA
    ca_file: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def server_context(self) -> ssl.SSLContext:
        """An SSL context for a server presenting the 127.0.0.1/localhost certificate."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.server_cert, self.server_key)
        return context


@pytest.fixture
def tls(tmp_path: Path) -> TlsFiles:
    """A private CA, a server certificate for loopback and a client certificate."""
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("edge-01")
    folder = tmp_path / "tls"
    folder.mkdir()
    files = TlsFiles(
        ca=ca,
        ca_file=folder / "ca.pem",
        server_cert=folder / "server.pem",
        server_key=folder / "server.key",
        client_cert=folder / "client.pem",
        client_key=folder / "client.key",
    )
    ca.cert_pem.write_to_path(str(files.ca_file))
    server.private_key_pem.write_to_path(str(files.server_key))
    files.server_cert.write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
    client.private_key_pem.write_to_path(str(files.client_key))
    files.client_cert.write_bytes(b"".join(blob.bytes() for blob in client.cert_chain_pems))
    return files


class Mosquitto:
    """A real mosquitto on a fixed free port that a test can stop and start again."""

    def __init__(
        self,
        folder: Path,
        *,
        tls: TlsFiles | None = None,
        max_packet_size: int | None = None,
        autosave: bool = False,
    ) -> None:
        self.port = free_port()
        self.folder = folder
        self.tls = tls
        self.max_packet_size = max_packet_size
        """Largest packet the broker takes (told to MQTT 5 clients in its CONNACK)."""
        self.autosave = autosave
        """Save persistence after every change, so a SIGKILL loses no acknowledged message."""
        self.log: list[str] = []
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        """mqtt:// or mqtts:// URL for the gateway's config."""
        return f"{'mqtts' if self.tls else 'mqtt'}://127.0.0.1:{self.port}"

    def _write_config(self) -> Path:
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {self.folder}/",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "max_queued_messages 0",
        ]
        if self.max_packet_size is not None:
            lines.append(f"max_packet_size {self.max_packet_size}")
        if self.autosave:
            lines += ["autosave_interval 1", "autosave_on_changes true"]
        if os.geteuid() == 0:  # else mosquitto drops to its own user and cannot read tmp_path
            lines.append("user root")
        if self.tls:
            lines += [
                f"cafile {self.tls.ca_file}",
                f"certfile {self.tls.server_cert}",
                f"keyfile {self.tls.server_key}",
                "require_certificate true",
            ]
        path = self.folder / "mosquitto.conf"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    async def start(self) -> None:
        """Start and return once the broker says it is running."""
        self.folder.mkdir(parents=True, exist_ok=True)
        config = self._write_config()
        process = await asyncio.create_subprocess_exec(
            mosquitto_binary(),
            "-c",
            str(config),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        self._process = process
        assert process.stderr is not None
        async with asyncio.timeout(10):
            while True:
                line = (await process.stderr.readline()).decode()
                if not line:
                    pytest.fail("mosquitto exited at start:\n" + "".join(self.log))
                self.log.append(line)
                if " running" in line:
                    break
        self._reader = asyncio.create_task(self._keep_reading(process))

    async def line_with(self, *parts: str, timeout: float = 10.0) -> str:
        """The first log line holding every one of ``parts``, once the broker wrote it
        (its log is read beside the sockets, so it may lag behind what they saw)."""
        async with asyncio.timeout(timeout):
            while True:
                for line in self.log:
                    if all(part in line for part in parts):
                        return line
                await asyncio.sleep(0.01)

    async def _keep_reading(self, process: asyncio.subprocess.Process) -> None:
        assert process.stderr is not None
        while line := await process.stderr.readline():
            self.log.append(line.decode())

    def freeze(self) -> None:
        """Suspend the broker: connections stay open but nothing is answered, as with a
        broker that cannot keep up."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """Let a frozen broker go on."""
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    async def kill(self) -> None:
        """Kill the broker (SIGKILL): it saves nothing more, as in a power cut."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.returncode is None:
            process.kill()
        await process.wait()
        if self._reader is not None:
            await self._reader
            self._reader = None

    async def stop(self) -> None:
        """Stop the broker (it saves its persistent sessions) and wait for it to exit."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.returncode is None:
            process.send_signal(signal.SIGCONT)  # a frozen broker handles no SIGTERM
            process.terminate()
        await process.wait()
        if self._reader is not None:
            await self._reader
            self._reader = None


@pytest.fixture
async def mosquitto(tmp_path: Path) -> AsyncIterator[Mosquitto]:
    """A plain-TCP mosquitto of this test's own."""
    broker = Mosquitto(tmp_path / "mosquitto")
    await broker.start()
    yield broker
    await broker.stop()


@pytest.fixture
async def mosquitto_tls(tmp_path: Path, tls: TlsFiles) -> AsyncIterator[Mosquitto]:
    """A mosquitto that speaks only TLS and requires a client certificate from the test CA."""
    broker = Mosquitto(tmp_path / "mosquitto-tls", tls=tls)
    await broker.start()
    yield broker
    await broker.stop()


@dataclass
class Received:
    """One message a subscriber saw."""

    topic: str
    payload: bytes
    retain: bool
    properties: Any = None

    def json(self) -> Any:
        """The payload decoded."""
        return orjson.loads(self.payload)


@dataclass
class Subscriber:
    """Collects every message on its topics; tests await what they expect."""

    messages: list[Received] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    def on(self, topic: str) -> list[Received]:
        """Messages seen on exactly ``topic``."""
        return [m for m in self.messages if m.topic == topic]

    async def wait_for(
        self, predicate: Callable[[list[Received]], bool], timeout: float = 15.0
    ) -> list[Received]:
        """Wait until ``predicate(messages)`` holds; fail the test after ``timeout``."""
        async with asyncio.timeout(timeout), self.changed:
            await self.changed.wait_for(lambda: predicate(self.messages))
        return self.messages


@contextlib.asynccontextmanager
async def subscribe(
    broker: Mosquitto,
    *topics: str,
    protocol: aiomqtt.ProtocolVersion = aiomqtt.ProtocolVersion.V5,
    identifier: str | None = None,
    clean: bool = True,
    tls_context: ssl.SSLContext | None = None,
    username: str | None = None,
) -> AsyncIterator[Subscriber]:
    """A subscriber on ``topics`` (QoS 1), connected before the block runs."""
    sub = Subscriber()
    session: dict[str, Any] = (
        {"clean_start": clean}
        if protocol == aiomqtt.ProtocolVersion.V5
        else {"clean_session": clean}
    )
    client = aiomqtt.Client(
        "127.0.0.1",
        broker.port,
        protocol=protocol,
        identifier=identifier,
        tls_context=tls_context,
        username=username,
        **session,
    )
    async with client:
        for topic in topics:
            await client.subscribe(topic, qos=1)

        async def collect() -> None:
            async for message in client.messages:
                payload = message.payload if isinstance(message.payload, bytes) else b""
                async with sub.changed:
                    sub.messages.append(
                        Received(str(message.topic), payload, message.retain, message.properties)
                    )
                    sub.changed.notify_all()

        task = asyncio.create_task(collect())
        try:
            yield sub
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


DIALECTS = ("rest", "classic", "unified")
DIALECT_SUITES = frozenset(
    {"tests.test_pipeline", "tests.test_commands", "tests.test_durability", "tests.test_health"}
)
"""End-to-end suites whose tests on ``simulator`` run once per WinCC dialect; elsewhere the
simulator speaks ``rest``. A test whose expectation differs by dialect branches on
``simulator.options.dialect``."""


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run the tests of the dialect suites that use ``simulator`` against every dialect."""
    if "simulator" in metafunc.fixturenames and metafunc.module.__name__ in DIALECT_SUITES:
        metafunc.parametrize("dialect", DIALECTS)


@pytest.fixture
def dialect() -> str:
    """The dialect the ``simulator`` speaks where a suite does not ask for every one."""
    return "rest"


@pytest.fixture
async def simulator(tls: TlsFiles, dialect: str) -> AsyncIterator[Simulator]:
    """The WinCC simulator over HTTPS with a frozen plant (tests change values themselves)."""
    speaks = cast(Literal["rest", "classic", "unified"], dialect)
    options = SimulatorOptions(port=0, tags=200, alarms=5, change_rate=0.0, seed=7, dialect=speaks)
    async with Simulator(options, ssl_context=tls.server_context()) as sim:
        yield sim


SMALL_DISK = "16m"
"""Size of the filesystem ``small_disk`` mounts: room for a few seconds of a test's polls."""


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of this test's own, small enough to run full for real; skipped (with the
    reason) where this user may not mount one."""
    folder = tmp_path / "small-disk"
    folder.mkdir()
    mount = shutil.which("mount")
    if mount is None:
        pytest.skip("no mount command here: a full disk cannot be made")
    mounted = subprocess.run(
        [mount, "-t", "tmpfs", "-o", f"size={SMALL_DISK},mode=0755", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs (needs root): {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "--lazy", str(folder)], check=True)


@pytest.fixture
def fragile_disk(tmp_path: Path) -> Iterator[Path]:
    """An ext4 filesystem of this test's own (a loop-mounted image) that ``break_disk``
    turns read-only under running programs, as the kernel does after a disk error;
    skipped (with the reason) where this user may not make one."""
    folder = tmp_path / "fragile-disk"
    folder.mkdir()
    image = tmp_path / "fragile-disk.img"
    with image.open("wb") as file:
        file.truncate(32 << 20)
    mkfs = shutil.which("mkfs.ext4") or shutil.which("mkfs.ext4", path="/usr/sbin:/sbin")
    if mkfs is None:
        pytest.skip("no mkfs.ext4 here: a disk that turns read-only cannot be made")
    subprocess.run([mkfs, "-q", str(image)], check=True)
    mounted = subprocess.run(
        ["mount", "-o", "loop,errors=remount-ro", str(image), str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot loop-mount an ext4 image (needs root): {mounted.stderr.strip()}")
    try:
        if not _error_trigger(folder).exists():
            pytest.skip("this kernel's ext4 has no trigger_fs_error: the disk cannot be broken")
        yield folder
    finally:
        subprocess.run(["umount", "--lazy", str(folder)], check=True)


def _error_trigger(folder: Path) -> Path:
    """The sysfs file that makes the ext4 filesystem at ``folder`` report an error."""
    source = subprocess.run(
        ["findmnt", "--noheadings", "--output", "SOURCE", str(folder)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return Path("/sys/fs/ext4", Path(source).name, "trigger_fs_error")


def break_disk(folder: Path) -> None:
    """Make ext4 at ``folder`` report an error, so that the kernel remounts it read-only
    (for good: only unmounting it undoes that)."""
    _error_trigger(folder).write_text("test\n")


def make_read_only(folder: Path) -> None:
    """Remount ``small_disk`` read-only (nothing may have a file open on it for writing)."""
    subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)


def fill_disk(folder: Path) -> Path:
    """Write a file into ``folder``'s filesystem until not one more byte fits, and return
    it: deleting it gives the space back."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
    try:
        size = 1 << 20
        while size:
            try:
                os.write(fd, bytes(size))
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                size //= 2
    finally:
        os.close(fd)
    return filler


@contextlib.contextmanager
def logged(logger: str, text: str) -> Iterator[asyncio.Event]:
    """An event set once ``logger`` logs a line containing ``text``, to await it."""
    seen = asyncio.Event()

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if text in record.getMessage():
                seen.set()

    watched = logging.getLogger(logger)
    level = watched.level
    watched.setLevel(logging.DEBUG)
    handler = Watch()
    watched.addHandler(handler)
    try:
        yield seen
    finally:
        watched.removeHandler(handler)
        watched.setLevel(level)
