"""The subscription source's sorting of notifications, against a scripted socket: what
the runtime sends goes to its group, and what names nothing is skipped, logged once, and
never ends the subscription. End to end against the simulator: tests/test_unified.py."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any, cast

import pytest

from gateway.core.models import Reading
from gateway.polling import SourceHealth
from gateway.sink import PollStats, TagSink
from gateway.subscription import ALARMS, SubscribedGroup, SubscriptionSource
from gateway.wincc.unified import UnifiedClient
from gateway.wincc.unified_ws import Notification, SubscriptionSocket

TS = "2026-12-01T10:00:00.123Z"
GOOD = {"quality": "GOOD_CASCADE", "subStatus": "NON_SPECIFIC", "limit": "OK"}


class ScriptedSocket:
    """Yields the given notifications, then ends as a closed socket would."""

    def __init__(self, notifications: list[Notification | None]) -> None:
        self._notifications = notifications

    async def messages(self) -> AsyncIterator[Notification | None]:
        for notification in self._notifications:
            yield notification


def tag(name: Any, value: float) -> Notification:
    item = {"name": name, "value": {"value": value, "timestamp": TS, "quality": GOOD}}
    return Notification("fast/0", {"tagValues": item})


async def test_notifications_that_name_nothing_are_skipped_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = cast(TagSink, SimpleNamespace(stats=PollStats()))
    group = SubscribedGroup("fast", 1.0, ["A", "B"], sink)
    source = SubscriptionSource(
        client=cast(UnifiedClient, None),
        groups=[group],
        alarms=None,
        source=SourceHealth(),
        chunk=10,
    )
    source._group_of["fast/0"] = group  # as _subscribe records it
    script = [
        tag("A", 1.5),
        tag(None, 2.0),  # names no tag
        None,  # a pong
        tag(7, 3.0),  # names no tag either
        Notification("unknown/9", {"tagValues": {"name": "B"}}),  # not ours
        Notification(ALARMS, {"activeAlarms": {"name": "X"}}),  # alarms are off
        tag("B", 4.0),
    ]
    with caplog.at_level(logging.WARNING, logger="gateway.subscription"):
        await source._receive(cast(SubscriptionSocket, ScriptedSocket(script)))
    pending = source._pending["fast"]
    assert [(r.name, r.value, r.quality) for r in pending] == [("A", 1.5, 192), ("B", 4.0, 192)]
    assert all(isinstance(r, Reading) for r in pending)
    warnings = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(warnings) == 1, warnings  # one reason, logged once
