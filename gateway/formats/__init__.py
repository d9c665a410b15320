"""Output formats, chosen by ``mqtt.payload``; a new format is a module and one entry here.
With ``mqtt.preset = "azure-iot-hub"`` the JSON format's messages go out as the device's
telemetry and commands come as direct methods (``gateway.formats.azure``)."""

from __future__ import annotations

from collections.abc import Callable

from gateway import __version__
from gateway.formats.azure import AzureTelemetry
from gateway.formats.base import FormatContext, OutputFormat
from gateway.formats.databus import DatabusConnector
from gateway.formats.json_topics import BatchJson, PerTagJson
from gateway.formats.sparkplug import SparkplugNode, connection_device
from gateway.formats.sparkplug_state import SparkplugState


def _per_tag(context: FormatContext) -> OutputFormat:
    settings = context.settings.mqtt
    return PerTagJson(
        prefix=settings.topic_prefix,
        qos=settings.qos,
        retain=settings.retain,
        topic_map=context.topic_map,
        version=__version__,
    )


def _batch(context: FormatContext) -> OutputFormat:
    settings = context.settings.mqtt
    return BatchJson(
        prefix=settings.topic_prefix,
        qos=settings.qos,
        retain=settings.retain,
        topic_map=context.topic_map,
        version=__version__,
        max_bytes=settings.batch_max_bytes,
    )


def _sparkplug(context: FormatContext) -> OutputFormat:
    settings = context.settings
    node = settings.sparkplug
    assert node.group_id is not None and node.edge_node_id is not None  # checked by the config
    buffer = settings.buffer.path
    return SparkplugNode(
        group_id=node.group_id,
        edge_node_id=node.edge_node_id,
        device=connection_device(settings.wincc.urls[0]) if node.device == "connection" else None,
        state=SparkplugState(buffer.with_name(buffer.name + ".sparkplug.json")),
        topic_map=context.topic_map,
        tag_types=context.tag_types,
        current=context.current,
        result_topic=f"{settings.mqtt.topic_prefix}/cmd/result",
        host_id=node.host_id,
    )


def _databus(context: FormatContext) -> OutputFormat:
    settings = context.settings
    assert settings.databus.app_instance is not None  # checked by the config
    buffer = settings.buffer.path
    return DatabusConnector(
        app_instance=settings.databus.app_instance,
        connection=connection_device(settings.wincc.urls[0]),
        state=SparkplugState(buffer.with_name(buffer.name + ".databus.json")),
        tag_types=context.tag_types,
        prefix=settings.mqtt.topic_prefix,
    )


FORMATS: dict[str, Callable[[FormatContext], OutputFormat]] = {
    "per-tag": _per_tag,
    "batch": _batch,
    "sparkplug": _sparkplug,
    "databus": _databus,
}
"""``mqtt.payload`` -> the factory of its format; a new format adds one entry (and its
name to the values ``mqtt.payload`` accepts)."""


def build_format(context: FormatContext) -> OutputFormat:
    """The configured output format."""
    settings = context.settings
    output = FORMATS[settings.mqtt.payload](context)
    if settings.mqtt.preset == "azure-iot-hub":
        assert settings.azure.device_id is not None  # checked by the config
        return AzureTelemetry(
            output,
            prefix=settings.mqtt.topic_prefix,
            device_id=settings.azure.device_id,
            topic_map=context.topic_map,
        )
    return output
