"""``[azure]`` and what ``mqtt.preset`` fixes and refuses in the rest of the settings.

A preset sets what the platform fixes where the user left the default (the protocol, the
client id, no retain, the batch size, the publish rate) and refuses, with the key and
the reason, whatever the platform would answer by closing the connection or dropping
data: ``check-config`` says so before anything is published.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, PrivateAttr, SecretStr, field_validator

from gateway.core.azure import decode_key, hub_host
from gateway.core.platforms import BATCH_HEADROOM, PLATFORMS, Platform
from gateway.core.topics import is_topic_text
from gateway.section import Section, read_secret_file
from gateway.units import Duration

if TYPE_CHECKING:
    from gateway.mqtt_settings import MqttSettings


class AzureSettings(Section):
    """[azure]: the IoT Hub device this gateway is, with mqtt.preset = "azure-iot-hub"."""

    hub: str | None = Field(
        None,
        description="IoT hub name (plant-hub for plant-hub.azure-devices.net) or its full "
        "host name (required with the preset).",
        examples=["plant-hub"],
    )
    device_id: str | None = Field(
        None,
        description="Device id registered in the hub; also the MQTT client id (required "
        "with the preset).",
        examples=["edge-01"],
    )
    device_key_file: Path | None = Field(
        None,
        description="File holding the device's symmetric key (primary key, base64), from "
        "which the gateway makes its SAS tokens. Not set: authenticate with a client "
        "certificate (mqtt.cert_file, mqtt.key_file) instead.",
        examples=["/run/secrets/azure_device_key"],
    )
    sas_lifetime: Duration = Field(
        3600.0,
        ge=2,
        description="Lifetime of each SAS token. The gateway reconnects with a fresh token "
        "after 80% of it, before the hub closes the connection at its expiry.",
    )
    _device_key: SecretStr | None = PrivateAttr(None)

    @field_validator("hub", "device_id")
    @classmethod
    def _is_one_level(cls, value: str | None) -> str | None:
        if value is not None and (not value or not is_topic_text(value) or "/" in value):
            raise ValueError("not empty, no / + # or control characters")
        return value

    def read_key(self) -> None:
        """Read and check the device key file, once, as the settings are loaded."""
        key = read_secret_file(self.device_key_file, "azure.device_key_file")
        if key is not None:
            try:
                decode_key(key.get_secret_value())
            except ValueError as exc:
                raise ValueError(f"azure.device_key_file: {exc}") from exc
        self._device_key = key

    @property
    def device_key(self) -> SecretStr | None:
        """The device key read from ``device_key_file``; None with X.509."""
        return self._device_key


def apply_preset(mqtt: MqttSettings, azure: AzureSettings, payload_kinds: set[str]) -> None:
    """Fix what ``mqtt.preset`` fixes; raise ValueError naming every setting it refuses.

    ``payload_kinds`` are the output formats that carry the Sparkplug conventions.
    """
    if mqtt.preset is None:
        return
    platform = PLATFORMS[mqtt.preset]
    problems = _common(mqtt, platform, payload_kinds)
    if mqtt.preset == "aws-iot-core":
        problems += _aws(mqtt)
    else:
        problems += _azure(mqtt, azure)
    if problems:
        raise ValueError("\n".join(problems))


def _common(mqtt: MqttSettings, platform: Platform, payload_kinds: set[str]) -> list[str]:
    name, given = platform.name, mqtt.model_fields_set
    problems = []
    if mqtt.qos > platform.max_qos:
        problems.append(f"mqtt.qos = {mqtt.qos}: {name} closes the connection on QoS 2; use 0 or 1")
    if mqtt.protocol not in platform.protocols:
        if "protocol" in given:
            problems.append(f"mqtt.protocol = {mqtt.protocol}: {name} takes only MQTT 3.1.1 (311)")
        mqtt.protocol = platform.protocols[0]
    if mqtt.retain and not platform.retain:
        if "retain" in given:
            problems.append(f"mqtt.retain = true: {name} does not keep retained messages")
        mqtt.retain = False
    if mqtt.payload in payload_kinds and not platform.sparkplug:
        problems.append(
            f'mqtt.payload = "{mqtt.payload}": {name} takes only its own topics and no '
            "retained messages; use an MQTT broker (Azure Event Grid, Azure IoT Operations) "
            "for Sparkplug"
        )
    largest = platform.max_payload - BATCH_HEADROOM
    if mqtt.batch_max_bytes > largest:
        if "batch_max_bytes" in given:
            problems.append(
                f"mqtt.batch_max_bytes = {mqtt.batch_max_bytes}: {name} takes messages of at "
                f"most {platform.max_payload} bytes; set at most {largest}"
            )
        mqtt.batch_max_bytes = largest
    if mqtt.keepalive > platform.max_keepalive:
        problems.append(f"mqtt.keepalive: {name} allows at most {platform.max_keepalive} s")
    limit = platform.max_client_id
    if limit is not None and len(mqtt.client_id.encode()) > limit:
        problems.append(f"mqtt.client_id: {name} allows at most {limit} bytes")
    if mqtt.publish_rate is None:
        mqtt.publish_rate = platform.rate
    elif platform.rate_fixed and mqtt.publish_rate > platform.rate:
        problems.append(
            f"mqtt.publish_rate = {mqtt.publish_rate:g}: {name} throttles a connection above "
            f"{platform.rate:g} publishes a second"
        )
    return problems


def _tls_only(mqtt: MqttSettings) -> bool:
    """Whether every broker URL is mqtts:// (a platform's endpoint, or its nodes)."""
    return all(url.startswith("mqtts://") for url in mqtt.urls)


def _aws(mqtt: MqttSettings) -> list[str]:
    problems = []
    if "url" not in mqtt.model_fields_set or not _tls_only(mqtt):
        problems.append(
            "mqtt.url: with AWS IoT Core, your account's device data endpoint over TLS, "
            "mqtts://<id>-ats.iot.<region>.amazonaws.com:8883 (AWS IoT console, Settings)"
        )
    if mqtt.cert_file is None:
        problems.append(
            "mqtt.cert_file and mqtt.key_file: AWS IoT Core needs the thing's certificate "
            "and private key"
        )
    return problems


def _azure(mqtt: MqttSettings, azure: AzureSettings) -> list[str]:
    given = mqtt.model_fields_set
    missing = [key for key in ("hub", "device_id") if getattr(azure, key) is None]
    if missing:
        return [f"azure.{' and azure.'.join(missing)}: required with mqtt.preset = azure-iot-hub"]
    assert azure.hub is not None and azure.device_id is not None
    problems = []
    if "url" not in given:
        mqtt.url = f"mqtts://{hub_host(azure.hub)}:8883"
    elif not _tls_only(mqtt):
        problems.append("mqtt.url: Azure IoT Hub takes MQTT only over TLS (mqtts://)")
    if "client_id" in given and mqtt.client_id != azure.device_id:
        problems.append("mqtt.client_id: with Azure IoT Hub it is azure.device_id; remove it")
    mqtt.client_id = azure.device_id
    problems += [
        f"mqtt.{key}: set by the gateway for Azure IoT Hub (from azure.device_key_file)"
        for key in ("username", "password", "password_file")
        if getattr(mqtt, key) is not None
    ]
    with_key = azure.device_key_file is not None
    with_cert = mqtt.cert_file is not None
    if with_key == with_cert:
        problems.append(
            "azure.device_key_file or mqtt.cert_file/key_file: Azure IoT Hub needs exactly "
            "one, the device's symmetric key or its X.509 certificate"
        )
    elif with_key:
        try:
            azure.read_key()
        except ValueError as exc:
            problems.append(str(exc))
    return problems
