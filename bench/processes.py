"""The child processes of a bench run: mosquitto, the simulator and the gateway.

Each child starts in its own session, so a Ctrl-C in the terminal reaches only the bench,
which then stops the children in order (the gateway first, so it can hand its buffer to
the broker). Every child is reaped: SIGTERM, then SIGKILL when it does not stop in time.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import orjson

STOP_TIMEOUT = 10.0
"""Seconds a child gets to stop on SIGTERM before it is killed."""

GATEWAY_STOP_TIMEOUT = 30.0
"""The gateway drains its buffer on SIGTERM (up to 10 s by its own limit), so it gets longer."""


class BenchError(Exception):
    """The run cannot go on; the message says why and is shown without a traceback."""

    exit_code = 1


class UsageError(BenchError):
    """The bench was asked for something it cannot do (exit code 2, like bad arguments)."""

    exit_code = 2


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_tool(name: str) -> str:
    """A program from PATH or Debian's sbin folders, or a clear error naming the package."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise BenchError(f"{name} is not installed: apt-get install -y mosquitto mosquitto-clients")
    return found


def clean_env() -> dict[str, str]:
    """The environment without ``GATEWAY_*``: overrides meant for a real gateway must not
    redirect the bench's gateway to another broker or server."""
    return {key: value for key, value in os.environ.items() if not key.startswith("GATEWAY_")}


@contextlib.contextmanager
def reaping() -> Iterator[contextlib.ExitStack]:
    """An ExitStack for children whose cleanup a second Ctrl-C cannot cut short."""
    with contextlib.ExitStack() as stack:
        try:
            yield stack
        finally:
            previous = {
                signum: signal.signal(signum, signal.SIG_IGN)
                for signum in (signal.SIGINT, signal.SIGTERM)
            }
            try:
                stack.close()
            finally:
                for signum, handler in previous.items():
                    signal.signal(signum, handler)


class Child:
    """One child process with its output in a log file; ``stop`` always reaps it."""

    def __init__(
        self,
        name: str,
        args: list[str],
        log_path: Path,
        *,
        stdin: int | None = None,
        stdout: int | None = None,
    ) -> None:
        self.name = name
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("ab")
        try:
            self.process: subprocess.Popen[bytes] = subprocess.Popen(
                args,
                stdin=stdin if stdin is not None else subprocess.DEVNULL,
                stdout=stdout if stdout is not None else self._log,
                stderr=self._log,
                start_new_session=True,
                bufsize=1 << 16,
                env=clean_env(),
            )
        except OSError:
            self._log.close()
            raise

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self.process.pid

    def running(self) -> bool:
        """Whether the child has not exited yet."""
        return self.process.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, wait, SIGKILL if it does not stop; returns the exit code. Idempotent."""
        process = self.process
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._log.close()
        return process.returncode

    def kill(self) -> None:
        """SIGKILL and reap: the process gets no chance to clean up. Idempotent."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._log.close()

    def log_tail(self, lines: int = 15) -> str:
        """The last lines the child wrote, to explain a failure."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class Broker:
    """A mosquitto of the bench's own on a free loopback port; can be stopped and restarted.

    Persistence is on so that a restart keeps the subscriber's session and its queue,
    which is what lets the drain scenario count every message across a broker outage.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self._child: Child | None = None
        self._starts = 0

    @property
    def url(self) -> str:
        """``mqtt://127.0.0.1:PORT`` for the gateway's config."""
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """Process id of the running broker."""
        if self._child is None:
            raise BenchError("the broker is not running")
        return self._child.pid

    def _config(self) -> Path:
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            "max_queued_messages 0",  # no per-client queue limit: nothing is dropped
            "max_inflight_messages 0",  # no limit on QoS 1 messages in flight to a client
            "persistence true",
            f"persistence_location {self.folder}/",
            "autosave_interval 0",  # save only at a clean stop, not during a measurement
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",  # "running" is one of these
        ]
        if os.geteuid() == 0:  # else mosquitto drops to its own user and cannot read folder
            lines.append("user root")
        path = self.folder / "mosquitto.conf"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    def start(self, timeout: float = 10.0) -> None:
        """Start and return once mosquitto says it is running."""
        self._starts += 1
        log_path = self.folder / f"mosquitto-{self._starts}.log"
        child = Child("mosquitto", [find_tool("mosquitto"), "-c", str(self._config())], log_path)
        self._child = child
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if " running" in log_path.read_text(encoding="utf-8", errors="replace"):
                return
            if not child.running():
                break
            time.sleep(0.05)
        child.stop()
        raise BenchError(f"mosquitto did not start on port {self.port}:\n{child.log_tail()}")

    def stop(self) -> None:
        """Stop (mosquitto saves its sessions); safe when not running."""
        if self._child is not None:
            self._child.stop()
            self._child = None


class SimulatorProcess:
    """``python -m gateway simulate`` on a free port, plain HTTP on loopback."""

    def __init__(
        self,
        folder: Path,
        *,
        tags: int,
        change_rate: float,
        dialect: str = "rest",
        realistic: bool = False,
        sweep: bool = False,
        name: str = "simulator",
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dialect = dialect
        self._args = [
            sys.executable,
            "-m",
            "gateway",
            "simulate",
            "--port",
            str(self.port),
            "--tags",
            str(tags),
            "--change-rate",
            str(change_rate),
            "--seed",
            "1",
            # history is read only after a WinCC outage, which no scenario has: keep it small
            "--history-depth",
            "100",
            "--dialect",
            dialect,
            *(["--realistic"] if realistic else []),
            *(["--sweep"] if sweep else []),
        ]
        self._log_path = folder / f"{name}.log"
        self._child: Child | None = None

    @property
    def pid(self) -> int:
        """Process id of the simulator."""
        if self._child is None:
            raise BenchError("the simulator is not running")
        return self._child.pid

    def start(self, timeout: float = 60.0) -> None:
        """Start and return once ``/_sim/stats`` answers."""
        child = self._child = Child("simulator", self._args, self._log_path)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.stats()
            except OSError:
                if not child.running():
                    break
                time.sleep(0.1)
            else:
                return
        raise BenchError(f"the simulator did not start:\n{child.log_tail()}")

    def _call(self, path: str, body: dict[str, Any] | None = None) -> Any:
        """GET (or POST ``body`` to) one of the simulator's own ``/_sim/`` routes."""
        request = urllib.request.Request(  # noqa: S310 - our own http://127.0.0.1 URL
            f"{self.url}{path}",
            data=None if body is None else orjson.dumps(body),
            headers={"Content-Type": "application/json"},
            method="GET" if body is None else "POST",
        )
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - as above
            return orjson.loads(response.read())

    def stats(self) -> dict[str, Any]:
        """``GET /_sim/stats``: the plant's counters (``changes`` and more)."""
        stats: dict[str, Any] = self._call("/_sim/stats")
        return stats

    def set_change_rate(self, rate: float) -> None:
        """Change how fast the plant changes, at run time (``POST /_sim/faults``)."""
        self._call("/_sim/faults", {"change_rate": rate})

    def stop(self) -> None:
        """Stop the simulator; safe when not running."""
        if self._child is not None:
            self._child.stop()


SPARKPLUG_GROUP = "bench"
"""The Sparkplug group of a run's gateway (``--payload sparkplug``)."""


def gateway_config(
    *,
    wincc_url: str,
    mqtt_url: str,
    client_id: str,
    topic_prefix: str,
    interval: float,
    buffer_path: Path,
    payload: str,
    dialect: str = "rest",
    health_port: int | None = None,
    instance: str | None = None,
) -> str:
    """The gateway's TOML config of one run: all tags in one group, alarms off, QoS 1.

    Alarms are off so that every message counted is a tag sample. ``payload`` is written
    only for ``batch`` and ``sparkplug``; a Sparkplug node is group ``SPARKPLUG_GROUP``,
    named after the last level of ``topic_prefix``. With ``dialect = "unified"`` the
    gateway subscribes to the simulated Unified runtime instead of polling. The health
    server (with the status page) listens on ``health_port`` when one is given. With an
    ``instance`` name the gateway is that instance of a pair (``[redundancy] role = "auto"``).
    """

    def text(value: str) -> str:
        return orjson.dumps(value).decode()  # a JSON string is a TOML basic string

    if dialect == "unified":
        wincc = [f"url = {text(wincc_url + '/graphql/')}", 'dialect = "unified"']
    else:
        wincc = [f"url = {text(wincc_url)}"]
    lines = [
        "[wincc]",
        *wincc,
        "allow_insecure_http = true",
        'username = "demo"',
        'password = "demo"',
        "",
        "[[poll]]",
        'name = "all"',
        f'interval = "{round(interval * 1000)}ms"',
        'tags = ["System1.**"]',
        "",
        "[alarms]",
        "enabled = false",
        "",
        "[mqtt]",
        f"url = {text(mqtt_url)}",
        f"client_id = {text(client_id)}",
        f"topic_prefix = {text(topic_prefix)}",
        "qos = 1",
    ]
    if payload != "per-tag":
        lines.append(f"payload = {text(payload)}")
    if payload == "sparkplug":
        node = topic_prefix.rsplit("/", 1)[-1]
        lines += ["", "[sparkplug]", f"group_id = {text(SPARKPLUG_GROUP)}"]
        lines.append(f"edge_node_id = {text(node)}")
    if instance is not None:
        lines += ["", "[redundancy]", 'role = "auto"', f"instance = {text(instance)}"]
    lines += [
        "",
        "[buffer]",
        f"path = {text(str(buffer_path))}",
        "",
        "[health]",
        *(
            ["enabled = false"]
            if health_port is None
            else ["enabled = true", f'listen = "127.0.0.1:{health_port}"']
        ),
        "",
        "[log]",
        'level = "warning"',
    ]
    return "\n".join(lines) + "\n"


class GatewayProcess:
    """``python -m gateway run --config FILE``, restartable (each start appends to its log)."""

    def __init__(self, folder: Path, config_path: Path, name: str = "gateway") -> None:
        self.name = name
        self._args = [sys.executable, "-m", "gateway", "run", "--config", str(config_path)]
        self._log_path = folder / f"{name}.log"
        self._child: Child | None = None

    @property
    def pid(self) -> int:
        """Process id of the gateway."""
        if self._child is None:
            raise BenchError("the gateway is not running")
        return self._child.pid

    def start(self) -> None:
        """Start it; readiness shows as samples arriving at the subscriber."""
        self._child = Child(self.name, self._args, self._log_path)

    def check_running(self) -> None:
        """Raise with the gateway's last log lines if it has exited."""
        child = self._child
        if child is not None and not child.running():
            raise BenchError(
                f"the {self.name} exited with {child.process.returncode}:\n{child.log_tail()}"
            )

    def kill(self) -> None:
        """SIGKILL, as a power cut or an OOM kill would: no drain, no offline status."""
        if self._child is not None:
            self._child.kill()

    def stop(self) -> int:
        """SIGTERM and wait: it publishes what it buffered, then exits (0 when clean)."""
        if self._child is None:
            return 0
        return self._child.stop(GATEWAY_STOP_TIMEOUT)

    def log_tail(self) -> str:
        """The gateway's last log lines."""
        return "" if self._child is None else self._child.log_tail()
