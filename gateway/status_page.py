"""What the status page shows: one snapshot of the gateway's state, and its recent trend.

The snapshot is built from the counters the gateway keeps anyway, only while a page is
open; a tick once a second keeps the trend (publish rate, buffer depth) of the last
minutes so that a page opened later draws it at once. Nothing secret goes in: URLs lose
their user info and query, error texts lose any user info of URLs they quote.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from gateway import __version__
from gateway.core.timestamps import now_ms
from gateway.metrics import Monitored

if TYPE_CHECKING:
    from gateway.config import GatewaySettings
    from gateway.core.models import Alarm
    from gateway.recent import RecentChanges
    from gateway.sink import GroupFeed

HISTORY = 600
"""Ticks (seconds) of trend kept: the chart shows the last ten minutes."""
CHANGES_SHOWN = 100
"""Newest changes a snapshot lists."""
ALARMS_SHOWN = 200
"""Active alarms a snapshot lists, highest priority first."""
RATE_WINDOW = 10
"""Ticks a scan class's sample rate is averaged over: a slow class polls every few seconds."""
TEXT_LIMIT = 300
"""Characters kept of an error text."""

_USERINFO = re.compile(r"(?<=://)[^/@\s]*@")


class StatusSource(Monitored, Protocol):
    """The gateway as the status page reads it."""

    @property
    def settings(self) -> GatewaySettings:
        """Where WinCC and the broker are (shown without credentials)."""

    @property
    def changes(self) -> RecentChanges:
        """The newest published samples."""


def public_url(url: str) -> str:
    """``url`` without user info, query and fragment: what may be shown to anyone."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port is not None else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def public_text(text: str) -> str:
    """An error text with the user info of any URL in it removed, shortened."""
    return _USERINFO.sub("", text)[:TEXT_LIMIT]


@dataclass(slots=True)
class _Tick:
    """The counters at one tick, to turn into rates at the next."""

    at: float  # loop time
    published: int
    readings: dict[str, int]


class StatusBoard:
    """Builds snapshots of ``gateway`` and keeps its trend; ``tick`` once a second."""

    def __init__(self, gateway: StatusSource) -> None:
        self._gateway = gateway
        self._ticks: deque[_Tick] = deque(maxlen=RATE_WINDOW + 1)
        self._rates: dict[str, float] = {}  # per scan class, samples read per second
        self._publish_rate = 0.0
        self._history: deque[tuple[int, float, int]] = deque(maxlen=HISTORY)

    def tick(self, now: float) -> None:
        """Take the counters at loop time ``now``: the publish rate since the last tick,
        the sample rates over the last ``RATE_WINDOW`` ticks, one trend point (wall ms,
        messages published per second, buffer depth)."""
        gateway = self._gateway
        current = _Tick(
            now,
            gateway.session.published,
            {feed.name: feed.stats.readings for feed in gateway.pollers},
        )
        ticks = self._ticks
        if ticks and now > ticks[-1].at:
            last, first = ticks[-1], ticks[0]
            self._publish_rate = max(0, current.published - last.published) / (now - last.at)
            self._rates = {
                name: max(0, count - first.readings.get(name, count)) / (now - first.at)
                for name, count in current.readings.items()
            }
            self._history.append((now_ms(), round(self._publish_rate, 1), gateway.buffer.depth))
        ticks.append(current)

    def snapshot(
        self, now: float, tag_filter: str = "", *, history: bool = False
    ) -> dict[str, Any]:
        """The page's data at loop time ``now``; the whole trend with ``history``, else
        only its newest point."""
        gateway = self._gateway
        settings = gateway.settings
        source = gateway.source
        error = source.last_error
        session = gateway.session
        trend = self._history
        points = list(trend) if history else [trend[-1]] if trend else []
        return {
            "version": __version__,
            "now_ms": now_ms(),
            "started": gateway.started.is_set(),
            "wincc": {
                "dialect": settings.wincc.dialect,
                "url": ", ".join(public_url(url) for url in settings.wincc.urls),
                "state": source.state,
                "since_ms": source.since_ms,
                "errors": sum(source.errors_by_kind.values()),
                "last_error": None
                if error is None
                else {"at_ms": error[0], "text": public_text(error[1])},
            },
            "mqtt": {
                "url": ", ".join(public_url(url) for url in settings.mqtt.urls),
                "connected": session.connected.is_set(),
                "reconnects": session.reconnects,
                "published": session.published,
                "publish_rate": round(self._publish_rate, 1),
            },
            "groups": [self._group(feed, now) for feed in gateway.pollers],
            "alarms": self._alarms(),
            "buffer": self._buffer(),
            "changes": [
                {
                    "group": c.group,
                    "tag": c.tag,
                    "value": c.value,
                    "quality": c.quality,
                    "ts": c.ts_ms,
                }
                for c in gateway.changes.newest(CHANGES_SHOWN, tag_filter)
            ],
            "commands": [
                {
                    "at_ms": c.at_ms,
                    "kind": c.kind,
                    "target": c.target,
                    "id": c.request_id,
                    "sender": c.sender,
                    "outcome": c.outcome,
                    "error": c.error,
                }
                for c in gateway.commands.recent.newest()
            ],
            "history": points,
            "history_full": history,
        }

    def _group(self, feed: GroupFeed, now: float) -> dict[str, Any]:
        stats = feed.stats
        last = stats.last_success
        return {
            "name": feed.name,
            "tags": len(feed.tags),
            "interval_s": feed.interval,
            "last_poll_age_s": None if last is None else round(max(0.0, now - last), 1),
            "polls": stats.polls,
            "failures": stats.failures,
            "overruns": stats.overruns,
            "samples_per_s": round(self._rates.get(feed.name, 0.0), 1),
        }

    def _alarms(self) -> dict[str, Any]:
        poller = self._gateway.alarm_poller
        if poller is None:
            return {"polled": False, "count": 0, "active": []}
        active: list[Alarm] = sorted(
            poller.active.values(), key=lambda alarm: (-alarm.priority, alarm.came_at or 0)
        )
        return {
            "polled": True,
            "count": len(active),
            "active": [
                {
                    "id": alarm.id,
                    "tag": alarm.tag,
                    "text": alarm.text,
                    "priority": alarm.priority,
                    "state": alarm.state,
                    "acked": alarm.acked,
                    "came_at": alarm.came_at,
                }
                for alarm in active[:ALARMS_SHOWN]
            ],
        }

    def _buffer(self) -> dict[str, Any]:
        gateway = self._gateway
        buffer = gateway.buffer
        return {
            "depth": buffer.depth,
            "oldest_age_s": round(buffer.oldest_age(), 1),
            "bytes": buffer.size_bytes,
            "max_bytes": buffer.max_size,
            "storage_error": buffer.storage_error,
            "dropped": {
                "buffer_full": buffer.dropped,
                "storage": buffer.storage_dropped,
                "quality": gateway.decider.withheld,
                **gateway.session.dropped,
            },
        }
