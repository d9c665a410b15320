"""Which command filters an instance of a gateway pair subscribes to as MQTT 5 shared
subscriptions (``$share/<group>/<filter>``), and under which group.

While an active instance has not yet noticed that the other one took the turn (it gives
way within moments), both are subscribed to the command topics. Shared by one group, the
broker hands each command to one of them only: never two writers for one command. Both
instances derive the same group from what they share, the topic prefix.
"""

from __future__ import annotations

import re

GROUP_PREFIX = "wincc-gateway."
"""Start of every pair's group name, so an operator recognises it in the broker's lists."""

_NOT_IN_A_GROUP = re.compile(r"[^A-Za-z0-9_.-]")
"""A share name is one topic level without wildcards; the rest is kept readable and safe
for broker ACLs and logs."""


def share_group(topic_prefix: str) -> str:
    """The shared subscription group of the pair publishing under ``topic_prefix``: the
    same on both instances, one topic level, no ``/ + #``."""
    return GROUP_PREFIX + _NOT_IN_A_GROUP.sub("_", topic_prefix)


def command_subscriptions(
    filters: tuple[str, ...], group: str | None, *, mqtt5: bool, broker_shares: bool
) -> tuple[tuple[str, ...], str | None]:
    """The filters to subscribe to for commands, and what to tell the operator about them
    (None when there is no pair: ``group`` None).

    Shared only with MQTT 5 (the broker tells in its CONNACK whether it has them,
    ``broker_shares``; absent means it has). A filter of the platform's own (``$...``,
    such as Azure's direct methods) stays plain: such brokers have no shared subscriptions.
    """
    if group is None:
        return filters, None
    if mqtt5 and broker_shares:
        shared = tuple(f if f.startswith("$") else f"$share/{group}/{f}" for f in filters)
        return shared, f"commands shared with the other instance: group {group}"
    why = (
        "the broker has no shared subscriptions (its CONNACK says so)"
        if mqtt5
        else "MQTT 3.1.1 has no shared subscriptions"
    )
    return filters, (
        f"commands subscribed plainly, not shared with the other instance ({why}): "
        "while one gives way to the other, a command can reach both"
    )
