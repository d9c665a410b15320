"""Output formats, chosen by ``mqtt.payload``; a new format is a module and one entry here."""

from __future__ import annotations

from collections.abc import Callable

from gateway import __version__
from gateway.config import MqttSettings
from gateway.core.topics import TopicMap
from gateway.formats.base import OutputFormat
from gateway.formats.json_topics import BatchJson, PerTagJson


def _per_tag(settings: MqttSettings, topic_map: TopicMap) -> OutputFormat:
    return PerTagJson(
        prefix=settings.topic_prefix,
        qos=settings.qos,
        retain=settings.retain,
        topic_map=topic_map,
        version=__version__,
    )


def _batch(settings: MqttSettings, topic_map: TopicMap) -> OutputFormat:
    return BatchJson(
        prefix=settings.topic_prefix,
        qos=settings.qos,
        retain=settings.retain,
        topic_map=topic_map,
        version=__version__,
        max_bytes=settings.batch_max_bytes,
    )


FORMATS: dict[str, Callable[[MqttSettings, TopicMap], OutputFormat]] = {
    "per-tag": _per_tag,
    "batch": _batch,
}
"""``mqtt.payload`` -> the factory of its format; a new format adds one entry (and its
name to the values ``mqtt.payload`` accepts)."""


def build_format(settings: MqttSettings, topic_map: TopicMap) -> OutputFormat:
    """The configured output format, naming tags through ``topic_map``."""
    return FORMATS[settings.payload](settings, topic_map)
