"""What a consumer receives: ``mosquitto_sub`` stamps every message, Python counts them.

The C client takes the receive time (``%U``, Unix time with nanoseconds) the moment the
message arrives, so the latency figures do not depend on how fast Python reads the pipe.
A reader thread parses the lines; the bookkeeping per sample is a few dict operations.
Sparkplug B payloads are binary: ``mosquitto_sub`` prints them in hex, and they are
decoded with the protobuf schema of ``pysparkplug`` (a decoder the gateway did not write).
"""

from __future__ import annotations

import bisect
import subprocess
import threading
import time
from array import array
from pathlib import Path

import orjson

from bench.processes import BenchError, Child, find_tool
from gateway.core.timestamps import parse_ts
from gateway.core.topics import tag_path

Sample = tuple[str, int]
"""A sample's identity: its tag (as topic path) and seq (Sparkplug, which has no seq:
its source timestamp)."""

Stamped = list[tuple[str, int, str | int]]
"""The samples of a message: tag (as topic path), seq, source timestamp (text or ms)."""

PROBE = "probe"
"""Topic level under the run's prefix that proves the subscription is in place."""


class Collector:
    """Counts samples by (tag, seq): distinct ones, duplicates, receive and source times.

    Tags are keyed by their topic path (``System1/Area1/Pump1/Speed``), whether they come
    one per message (``P/tags/<path>``) or inside batch messages (``P/batch/<group>``).
    Thread-safe: the reader thread feeds it, the bench reads it.
    """

    def __init__(self, prefix: str) -> None:
        self._tags_root = f"{prefix}/tags/"
        self._batch_root = f"{prefix}/batch/"
        self._probe = f"{prefix}/{PROBE}"
        self._lock = threading.Lock()
        self._seen: set[Sample] = set()
        self._ts_ms: dict[str, int] = {}  # source timestamps repeat a lot: parse each once
        self._paths: dict[str, str] = {}  # tag name -> topic path, for batch payloads
        self._remaining: dict[str, int] | None = None
        self.probes = 0
        self.messages = 0
        self.duplicates = 0
        self.unparsed = 0  # messages on the run's topics that are no samples
        self.distinct: dict[str, int] = {}  # tag -> distinct seqs received
        self.max_seq: dict[str, int] = {}
        self.targets_done_ns: int | None = None
        # one entry per distinct sample, in order of first receipt
        self.recv_ns = array("q")
        self.ts_ms = array("q")
        # one entry per MQTT message (a batch message carries many samples)
        self.message_recv_ns = array("q")

    printed = "%p"
    """How ``mosquitto_sub`` prints the payload (``-F``): as it is."""

    def filters(self) -> list[str]:
        """The topic filters that carry the run's samples."""
        return [self._tags_root + "#", self._batch_root + "#"]

    def payload(self, printed: bytes) -> bytes:
        """The payload as published, from what ``mosquitto_sub`` printed."""
        return printed

    def parse(self, topic: str, payload: bytes) -> Stamped | None:
        """The (tag, seq, ts) samples a message carries; None if it is no tag message.

        Raises ValueError, KeyError or TypeError on a payload that is not a sample.
        """
        if topic.startswith(self._tags_root):
            body = orjson.loads(payload)
            return [(topic[len(self._tags_root) :], body["seq"], body["ts"])]
        if topic.startswith(self._batch_root):
            body = orjson.loads(payload)
            return [(self._path(s["tag"]), s["seq"], s["ts"]) for s in body["samples"]]
        return None

    def _path(self, tag: str) -> str:
        """The tag's topic path, worked out once per tag: a batch names every tag again."""
        path = self._paths.get(tag)
        if path is None:
            path = self._paths[tag] = tag_path(tag)
        return path

    def feed(self, line: bytes) -> None:
        """One line of ``mosquitto_sub -F '%U %t %p'``."""
        try:
            stamp, topic_raw, payload = line.split(b" ", 2)
            recv_ns = int(stamp.replace(b".", b""))
            topic = topic_raw.decode()
            samples = self.parse(topic, self.payload(payload))
            if samples is None:
                if topic == self._probe:
                    self.probes += 1
                else:
                    self.unparsed += 1
                return
            stamped = [(tag, int(seq), self._source_ms(ts)) for tag, seq, ts in samples]
        except (ValueError, KeyError, TypeError):
            self.unparsed += 1
            return
        with self._lock:
            self.messages += 1
            self.message_recv_ns.append(recv_ns)
            for tag, seq, ts_ms in stamped:
                self._sample(tag, seq, ts_ms, recv_ns)

    def _source_ms(self, ts: str | int) -> int:
        if isinstance(ts, int):
            return ts
        ts_ms = self._ts_ms.get(ts)
        if ts_ms is None:
            ts_ms = self._ts_ms[ts] = parse_ts(ts)
        return ts_ms

    def _sample(self, tag: str, seq: int, ts_ms: int, recv_ns: int) -> None:
        key = (tag, seq)
        if key in self._seen:
            self.duplicates += 1
            return
        self._seen.add(key)
        self.distinct[tag] = self.distinct.get(tag, 0) + 1
        if seq > self.max_seq.get(tag, 0):
            self.max_seq[tag] = seq
        self.recv_ns.append(recv_ns)
        self.ts_ms.append(ts_ms)
        remaining = self._remaining
        if remaining and remaining.get(tag, seq + 1) <= seq:
            del remaining[tag]
            if not remaining:
                self.targets_done_ns = recv_ns

    @property
    def received(self) -> int:
        """Distinct samples received so far."""
        return len(self._seen)

    def has(self, sample: Sample) -> bool:
        """Whether the sample has been received."""
        return sample in self._seen

    def set_targets(self, targets: dict[str, int]) -> None:
        """Note when every tag has reached its target seq (``targets_done_ns``)."""
        with self._lock:
            remaining = {tag: seq for tag, seq in targets.items() if self.max_seq.get(tag, 0) < seq}
            self._remaining = remaining
            self.targets_done_ns = None if remaining else time.time_ns()

    def first_recv_after(self, start_ns: int) -> int | None:
        """Receive time of the first message at or after ``start_ns``."""
        with self._lock:
            index = bisect.bisect_left(self.message_recv_ns, start_ns)
            return self.message_recv_ns[index] if index < len(self.message_recv_ns) else None


class SparkplugCollector(Collector):
    """Counts the metrics of one Sparkplug edge node's DDATA, named by the aliases its
    DBIRTHs declare. A sample is known by its tag and source timestamp (ms)."""

    printed = "%x"

    def __init__(self, prefix: str, *, group_id: str, edge_node_id: str) -> None:
        from pysparkplug._protobuf import Payload  # noqa: PLC0415 - only Sparkplug runs need it

        super().__init__(prefix)
        self._group_id = group_id
        self._node = edge_node_id
        self._names: dict[int, str] = {}  # alias -> metric name (the tag's topic path)
        self._decode = Payload.FromString

    def filters(self) -> list[str]:
        """The node's messages and its devices'."""
        base = f"spBv1.0/{self._group_id}/+/{self._node}"
        return [base, base + "/+"]

    def payload(self, printed: bytes) -> bytes:
        """The binary payload, which ``mosquitto_sub`` printed in hex."""
        return bytes.fromhex(printed.decode())

    def parse(self, topic: str, payload: bytes) -> Stamped | None:
        """DDATA metrics as samples; births and the node's own messages carry none."""
        levels = topic.split("/")
        if len(levels) < 4 or levels[:2] != ["spBv1.0", self._group_id] or levels[3] != self._node:
            return None
        kind = levels[2]
        if kind not in ("DDATA", "DBIRTH"):
            return []
        metrics = self._decode(payload).metrics
        if kind == "DBIRTH":
            self._names.update((m.alias, m.name) for m in metrics)
            return []
        names = self._names
        return [(names[m.alias], m.timestamp, m.timestamp) for m in metrics]


class Subscriber:
    """``mosquitto_sub`` on the run's tag and batch topics, QoS 1, with a persistent session.

    The persistent session (``-c``) makes the broker queue messages for it while it
    reconnects after a broker restart, so nothing published meanwhile escapes the count.
    """

    def __init__(
        self,
        folder: Path,
        *,
        port: int,
        prefix: str,
        client_id: str,
        collector: Collector | None = None,
    ) -> None:
        self.collector = collector if collector is not None else Collector(prefix)
        self._port = port
        self._prefix = prefix
        topics = [*self.collector.filters(), f"{prefix}/{PROBE}"]
        self._args = [
            find_tool("mosquitto_sub"),
            *("-h", "127.0.0.1", "-p", str(port), "-V", "mqttv5", "-q", "1"),
            *("-c", "-i", client_id),
            "-R",  # not the retained copies a broker restart sends again on resubscribing
            *(arg for topic in topics for arg in ("-t", topic)),
            *("-F", f"%U %t {self.collector.printed}"),
        ]
        self._log_path = folder / f"subscriber-{client_id}.log"
        self._child: Child | None = None
        self._reader: threading.Thread | None = None
        self._error: Exception | None = None

    def start(self, timeout: float = 10.0) -> None:
        """Start, and return once a probe message has come through the broker."""
        child = self._child = Child(
            "mosquitto_sub", self._args, self._log_path, stdout=subprocess.PIPE
        )
        self._reader = threading.Thread(
            target=self._read, args=(child.process,), name="bench-subscriber", daemon=True
        )
        self._reader.start()
        probe = [
            find_tool("mosquitto_pub"),
            *("-h", "127.0.0.1", "-p", str(self._port), "-q", "1"),
            *("-t", f"{self._prefix}/{PROBE}", "-m", "probe"),
        ]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            subprocess.run(probe, check=False, capture_output=True, timeout=timeout)
            pause = time.monotonic() + 0.5
            while time.monotonic() < pause:
                if self.collector.probes:
                    return
                time.sleep(0.02)
        raise BenchError(f"mosquitto_sub did not subscribe:\n{child.log_tail()}")

    def _read(self, process: subprocess.Popen[bytes]) -> None:
        stdout = process.stdout
        assert stdout is not None
        feed = self.collector.feed
        try:
            for line in stdout:
                feed(line)
        except Exception as exc:  # noqa: BLE001 - raised again by wait_quiet() and stop()
            self._error = exc
        finally:
            stdout.close()

    def wait_quiet(self, idle: float = 1.0, timeout: float = 30.0) -> None:
        """Wait until no message has arrived for ``idle`` seconds (bounded by ``timeout``)."""
        deadline = time.monotonic() + timeout
        last = (-1, time.monotonic())
        while time.monotonic() < deadline:
            self._raise_reader_error()
            count = self.collector.messages
            if count != last[0]:
                last = (count, time.monotonic())
            elif time.monotonic() - last[1] >= idle:
                return
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop mosquitto_sub and the reader thread; safe when not started."""
        if self._child is not None:
            self._child.stop()
        if self._reader is not None:
            self._reader.join(timeout=10)
        self._raise_reader_error()

    def _raise_reader_error(self) -> None:
        if self._error is not None:
            raise BenchError(f"the subscriber's reader failed: {self._error!r}")
