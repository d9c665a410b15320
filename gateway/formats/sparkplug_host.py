"""The primary host's STATE, which an edge node with ``host_id`` set obeys.

The host publishes ``spBv1.0/STATE/<host id>`` retained, as JSON ``{"online": bool,
"timestamp": ms}``. The node sends no births, and so no data, until the host says online;
when it later says offline the node leaves (NDEATH) and connects again, so that its data
waits in the buffer for the host instead of going to nobody. STATE messages can arrive
out of order (a retained old one, a host restarting): one older than the last taken is
ignored.
"""

from __future__ import annotations

import logging
from typing import Literal

import orjson

log = logging.getLogger(__name__)

Verdict = Literal["online", "offline"]


class PrimaryHost:
    """The last STATE taken from the primary host, and whether a new one changes it."""

    def __init__(self, namespace: str, host_id: str) -> None:
        self.topic = f"{namespace}/STATE/{host_id}"
        self.online = False
        self._timestamp = -1  # of the last STATE taken
        self._malformed_logged = False

    def reset(self) -> None:
        """A new connection: the host counts as offline until its (retained) STATE says
        otherwise on this connection; the last timestamp stays, older ones stay ignored."""
        self.online = False

    def observe(self, payload: bytes) -> Verdict | None:
        """The host's state when this STATE changes it; None for one that is older than
        the last taken, says what is known already, or cannot be read."""
        try:
            body = orjson.loads(payload)
            online, timestamp = body["online"], body["timestamp"]
            if not isinstance(online, bool) or type(timestamp) is not int:
                raise TypeError("online must be a boolean and timestamp an integer")  # noqa: TRY301
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            if not self._malformed_logged:
                self._malformed_logged = True
                log.warning(
                    "STATE of the primary host on %s ignored, it is not "
                    '{"online": bool, "timestamp": ms}: %s',
                    self.topic,
                    exc,
                )
            return None
        if timestamp < self._timestamp:
            log.info("STATE on %s older than the last one, ignored", self.topic)
            return None
        self._timestamp = timestamp
        if online == self.online:
            return None
        self.online = online
        log.info("primary host %s is %s", self.topic, "online" if online else "offline")
        return "online" if online else "offline"
