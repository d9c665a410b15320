"""What a Sparkplug edge node must remember across restarts: the last bdSeq, and the alias
and datatype of every metric with the device it belongs to.

Host applications map aliases to metrics from the births; an alias that moved to another
metric after a restart would file data under the wrong tag, so aliases are only ever
added. The bdSeq must rise by one for every connection, also across restarts, or a host
could take a new session's death for an old one's. Kept in a small JSON file next to the
buffer, replaced atomically (written aside, synced, renamed) so a crash leaves the old or
the new contents, never a mix.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import orjson

log = logging.getLogger(__name__)

PRIVATE = 0o600
"""The file names the plant's tags, as the buffer does."""


class SparkplugState:
    """The node's durable state; every change is on disk before the call returns."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.bd_seq: int | None = None  # the last one used, None before the first connect
        self.metrics: dict[str, tuple[int, int]] = {}  # tag -> (alias, datatype)
        self.devices: dict[str, list[str]] = {}  # device id -> its tags, in birth order
        self.node: dict[str, int] = {}  # the node's own metrics that go by alias -> alias
        self._load()

    def _load(self) -> None:
        try:
            data = orjson.loads(self.path.read_bytes())
            bd_seq = data["bd_seq"]
            metrics = {
                str(name): (int(alias), int(datatype))
                for name, (alias, datatype) in data["metrics"].items()
            }
            devices = {str(d): [str(n) for n in names] for d, names in data["devices"].items()}
            node = {str(name): int(alias) for name, alias in data.get("node", {}).items()}
        except FileNotFoundError:
            return
        except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            log.warning(
                "Sparkplug state %s cannot be read (%s): bdSeq and aliases start afresh",
                self.path,
                exc,
            )
            return
        self.bd_seq = bd_seq if type(bd_seq) is int and 0 <= bd_seq <= 255 else None
        self.metrics = metrics
        self.devices = devices
        self.node = node

    def next_bd_seq(self) -> int:
        """The bdSeq of a new connection: one more than the last, 0 after 255 (and at the
        very first connection)."""
        self.bd_seq = 0 if self.bd_seq is None else (self.bd_seq + 1) % 256
        self.save()
        return self.bd_seq

    def _next_alias(self) -> int:
        used = [alias for alias, _ in self.metrics.values()] + list(self.node.values())
        return max(used, default=0) + 1

    def node_alias(self, name: str) -> int:
        """The alias of one of the node's own metrics, given (and saved) on first use."""
        alias = self.node.get(name)
        if alias is None:
            alias = self.node[name] = self._next_alias()
            self.save()
        return alias

    def add_metrics(self, types: dict[str, int]) -> bool:
        """Give each new tag the next free alias and record every tag's datatype; True
        when something changed (the caller saves, with the devices)."""
        changed = False
        next_alias = self._next_alias()
        for name, datatype in types.items():
            known = self.metrics.get(name)
            if known is None:
                self.metrics[name] = (next_alias, datatype)
                next_alias += 1
                changed = True
            elif known[1] != datatype:
                self.metrics[name] = (known[0], datatype)
                changed = True
        return changed

    def save(self) -> None:
        """Replace the file with the current state, atomically and durably."""
        data = orjson.dumps(
            {
                "bd_seq": self.bd_seq,
                "metrics": {name: list(entry) for name, entry in self.metrics.items()},
                "devices": self.devices,
                "node": self.node,
            }
        )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        aside = self.path.with_name(self.path.name + ".tmp")
        with os.fdopen(
            os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE), "wb"
        ) as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        aside.replace(self.path)
        with contextlib.suppress(OSError):  # not every platform syncs a directory
            folder = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)
