"""Prometheus metrics of a running gateway, read from the gateway's own counters.

The pollers, the MQTT session, the sample decider and the command service already count
what they do, so a custom collector reads those counters when Prometheus scrapes instead
of updating a metric per sample: the 50k-samples-a-second path pays nothing. Only the poll
duration is a real histogram, fed once per poll by ``GatewayMetrics.observe_poll``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway import __version__

if TYPE_CHECKING:
    from gateway.alarm_sink import AlarmFeed
    from gateway.buffer.outbox import DurableBuffer
    from gateway.commands import CommandService
    from gateway.core.samples import SampleDecider
    from gateway.mqtt.session import MqttSession
    from gateway.polling import SourceHealth
    from gateway.sink import GroupFeed, PollStats

NAMESPACE = "wincc_gateway"

POLL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Seconds: a local read takes milliseconds, a slow WinCC over a WAN seconds, a timeout 5 s+."""

_GROUP_COUNTERS = (
    ("polls", "polls", "Polls of the scan class that succeeded."),
    ("poll_failures", "failures", "Polls that failed (WinCC unreachable or erring)."),
    ("poll_overruns", "overruns", "Polls that took longer than the interval."),
    ("samples_read", "readings", "Tag readings received from WinCC."),
    ("samples_published", "published", "Samples queued for MQTT after change and quality checks."),
    ("read_errors", "read_errors", "Tags WinCC answered with an error instead of a value."),
    ("backfilled_samples", "backfilled", "Samples published from the WinCC archive."),
    (
        "gaps_unfilled",
        "gaps_unfilled",
        "Gaps in the data the WinCC archive could not fill (each logged with its range).",
    ),
    (
        "gap_unfilled_seconds",
        "gap_unfilled_seconds",
        "Seconds of WinCC time in gaps the archive could not fill.",
    ),
)
"""(metric name, ``PollStats`` attribute, help) of the per-scan-class counters."""


@dataclass(slots=True)
class PairRole:
    """This process as one instance of a gateway pair, for the metrics of either role."""

    instance: str
    takeovers: int = 0
    """Times this process took the turn over from the other instance."""


class Monitored(Protocol):
    """What metrics and health read from the gateway; ``gateway.app.Gateway`` fits it.

    A protocol rather than the class: ``gateway.app`` imports ``gateway.health``, which
    imports this module, so the imports stay one-way; and tests can hand in a stand-in.
    """

    @property
    def started(self) -> asyncio.Event:
        """Set once the tag lists are resolved and the pollers run."""

    @property
    def session(self) -> MqttSession:
        """The broker connection."""

    @property
    def source(self) -> SourceHealth:
        """Whether WinCC answers."""

    @property
    def decider(self) -> SampleDecider:
        """The quality policy's counters."""

    @property
    def commands(self) -> CommandService:
        """The command results."""

    @property
    def pollers(self) -> Sequence[GroupFeed]:
        """What feeds each scan class: a poller, or a subscription."""

    @property
    def alarm_poller(self) -> AlarmFeed | None:
        """What feeds the alarms, None while starting or when alarms are off."""

    @property
    def buffer(self) -> DurableBuffer:
        """The store-and-forward buffer."""

    @property
    def pair(self) -> PairRole | None:
        """This instance of a pair (then the active one); None for a single gateway."""


class GatewayMetrics:
    """The gateway's metrics: a private registry, so two gateways in one process never mix.

    ``observe_poll`` is the pollers' ``PollObserver``; everything else is read at scrape
    time by ``GatewayCollector``.
    """

    def __init__(self, gateway: Monitored) -> None:
        self.registry = CollectorRegistry()
        self._poll_duration = Histogram(
            "poll_duration_seconds",
            "Time one poll of a scan class took, from request to queued messages.",
            ["group"],
            namespace=NAMESPACE,
            buckets=POLL_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(GatewayCollector(gateway))

    def observe_poll(self, group: str, seconds: float) -> None:
        """Record the duration of one successful poll of ``group``."""
        self._poll_duration.labels(group).observe(seconds)


class GatewayCollector(Collector):
    """Turns the gateway's counters into metric families, at scrape time only."""

    def __init__(self, gateway: Monitored) -> None:
        self._gateway = gateway

    def collect(self) -> Iterable[Metric]:
        """Every metric but the poll duration histogram."""
        gateway = self._gateway
        yield _gauge("build_info", "The gateway's version.", 1, version=__version__)
        if gateway.pair is not None:
            yield from pair_metrics(gateway.pair, active=True)
        yield from _group_counters(gateway.pollers)
        if gateway.alarm_poller is not None:
            yield from _alarm_counters(gateway.alarm_poller.stats)

        buffer = gateway.buffer
        dropped = CounterMetricFamily(
            f"{NAMESPACE}_samples_dropped",
            "Samples not published: reason=quality by the drop policy, "
            "reason=buffer_full because the buffer was full, "
            "reason=storage because the disk refused to store them, "
            "reason=too_large because the topic or the packet exceeds what MQTT or the broker "
            "allows, reason=invalid because the MQTT client refused the message.",
            labels=["reason"],
        )
        dropped.add_metric(["quality"], gateway.decider.withheld)
        dropped.add_metric(["buffer_full"], buffer.dropped)
        dropped.add_metric(["storage"], buffer.storage_dropped)
        for reason, count in gateway.session.dropped.items():
            dropped.add_metric([reason], count)
        yield dropped
        yield _counter(
            "bad_quality_published",
            "Samples published with good=false (quality policy flag).",
            gateway.decider.bad_published,
        )
        yield _gauge(
            "buffer_messages", "Messages waiting in the buffer for the broker.", buffer.depth
        )
        yield _gauge("buffer_bytes", "Size of the buffer's contents.", buffer.size_bytes)
        yield _gauge("buffer_max_bytes", "Size the buffer may grow to.", buffer.max_size)

        session = gateway.session
        yield _gauge(
            "mqtt_connected", "1 while connected to the broker.", int(session.connected.is_set())
        )
        yield _counter(
            "mqtt_reconnects", "Failed attempts to (re)connect to the broker.", session.reconnects
        )
        yield _counter("mqtt_published", "Messages the broker acknowledged.", session.published)

        source = gateway.source
        yield _gauge("wincc_up", "1 while WinCC answers.", int(source.state == "up"))
        yield _labelled_counter(
            "wincc_errors", "Failed WinCC requests, by error kind.", "kind", source.errors_by_kind
        )
        yield _labelled_counter(
            "commands",
            "MQTT commands handled, by result: ok, refused (not executed), "
            "unknown (sent to WinCC, no answer).",
            "result",
            gateway.commands.results,
        )


class StandbyCollector(Collector):
    """The metrics of a standby: its role, its broker connection, its takeovers so far.
    It polls nothing, so the active instance's metrics are the plant's."""

    def __init__(self, pair: PairRole, connected: Callable[[], bool]) -> None:
        self._pair = pair
        self._connected = connected

    def collect(self) -> Iterable[Metric]:
        """Read at scrape time, named as on the active instance."""
        yield _gauge("build_info", "The gateway's version.", 1, version=__version__)
        yield from pair_metrics(self._pair, active=False)
        yield _gauge("mqtt_connected", "1 while connected to the broker.", int(self._connected()))


def standby_registry(pair: PairRole, connected: Callable[[], bool]) -> CollectorRegistry:
    """What a standby's ``/metrics`` serves."""
    registry = CollectorRegistry()
    registry.register(StandbyCollector(pair, connected))
    return registry


def pair_metrics(pair: PairRole, *, active: bool) -> Iterable[Metric]:
    """Which instance of the pair this is and whether it is the active one, so that a
    scrape of both boxes shows exactly one ``redundancy_active`` of 1."""
    yield _gauge(
        "redundancy_active",
        "1 on the active instance of a gateway pair, 0 on the standby.",
        int(active),
        instance=pair.instance,
    )
    yield _counter(
        "redundancy_takeovers",
        "Times this process took the turn over as the active instance of its pair.",
        pair.takeovers,
    )


def _group_counters(pollers: Sequence[GroupFeed]) -> Iterable[Metric]:
    stats: list[tuple[str, PollStats]] = [(poller.name, poller.stats) for poller in pollers]
    for name, attribute, documentation in _GROUP_COUNTERS:
        family = CounterMetricFamily(f"{NAMESPACE}_{name}", documentation, labels=["group"])
        for group, counters in stats:
            family.add_metric([group], getattr(counters, attribute))
        yield family


def _alarm_counters(stats: PollStats) -> Iterable[Metric]:
    yield _counter("alarm_polls", "Polls of the active alarms that succeeded.", stats.polls)
    yield _counter("alarm_poll_failures", "Polls of the active alarms that failed.", stats.failures)
    yield _counter(
        "alarm_poll_overruns", "Alarm polls that took longer than the interval.", stats.overruns
    )
    yield _counter(
        "alarm_read_errors",
        "Alarms WinCC listed that could not be read (their last state stands).",
        stats.read_errors,
    )


def _counter(name: str, documentation: str, value: float) -> Metric:
    return CounterMetricFamily(f"{NAMESPACE}_{name}", documentation, value=value)


def _gauge(name: str, documentation: str, value: float, **labels: str) -> Metric:
    family = GaugeMetricFamily(f"{NAMESPACE}_{name}", documentation, labels=list(labels))
    family.add_metric(list(labels.values()), value)
    return family


def _labelled_counter(
    name: str, documentation: str, label: str, counts: Mapping[str, int]
) -> Metric:
    family = CounterMetricFamily(f"{NAMESPACE}_{name}", documentation, labels=[label])
    for key, count in sorted(counts.items()):
        family.add_metric([key], count)
    return family
