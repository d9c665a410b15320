"""An open status page, as the bench keeps one: the page's live stream (``/events``) read
in a thread, every update counted, the way a browser tab holds it open."""

from __future__ import annotations

import http.client
import threading
import time

from bench.processes import BenchError


class OpenPage:
    """Reads the gateway's ``/events`` stream until stopped; counts the updates."""

    def __init__(self, port: int) -> None:
        self._port = port
        self.events = 0
        self._connection: http.client.HTTPConnection | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._read, name="bench-page", daemon=True)
        self._error: Exception | None = None

    def start(self, timeout: float = 30.0) -> None:
        """Open the stream and return once the first update has arrived."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.events:
            if time.monotonic() > deadline:
                raise BenchError(f"the status page's stream did not open: {self._error!r}")
            time.sleep(0.05)

    def _read(self) -> None:
        while not self._stopping.is_set():
            try:
                self._follow()
            except (OSError, http.client.HTTPException) as exc:
                if self._stopping.is_set():
                    return
                self._error = exc
                time.sleep(0.2)  # the health server is not up yet
            else:
                return

    def _follow(self) -> None:
        """Read the stream to its end (the gateway stops, or ``stop`` closes it)."""
        connection = self._connection = http.client.HTTPConnection(
            "127.0.0.1", self._port, timeout=30
        )
        connection.request("GET", "/events", headers={"Accept": "text/event-stream"})
        response = connection.getresponse()
        if response.status != 200:
            raise http.client.HTTPException(f"GET /events answered {response.status}")
        for line in response:
            if line.startswith(b"data:"):
                self.events += 1

    def stop(self) -> None:
        """Close the stream, as a closed tab does."""
        self._stopping.set()
        if self._connection is not None and self._connection.sock is not None:
            self._connection.sock.close()
        self._thread.join(timeout=10)
