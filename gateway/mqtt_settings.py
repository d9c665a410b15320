"""``[mqtt]`` and the sections of the output formats that need their own (``[sparkplug]``,
``[databus]``).

Apart from ``gateway.config`` to keep each module to one concern: the broker connection
and what goes over it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from gateway.core.platforms import Preset
from gateway.core.topics import is_topic_text
from gateway.section import Section, read_secret_file
from gateway.units import ByteSize, Duration


class MqttSettings(Section):
    """[mqtt]: the broker the gateway publishes to."""

    preset: Preset | None = Field(
        None,
        description='A cloud IoT platform whose rules the gateway keeps: "aws-iot-core" or '
        '"azure-iot-hub" (see [azure]). Fixes what the platform fixes (QoS at most 1, '
        "payload and topic sizes, the publish rate) and refuses settings it cannot take.",
        examples=["aws-iot-core"],
    )
    url: str | list[str] = Field(
        "mqtt://127.0.0.1:1883",
        description="Broker URL: mqtt://host:port or mqtts://host:port (TLS); or a list of "
        "the nodes of a broker cluster, all mqtt:// or all mqtts://. The gateway connects to "
        "the first that answers and moves to the next when a node fails; what a node did "
        "not acknowledge is sent again through the next.",
        examples=[["mqtts://node-a.example:8883", "mqtts://node-b.example:8883"]],
    )
    client_id: str = Field("wincc-gateway", min_length=1, description="MQTT client identifier.")
    topic_prefix: str = Field(
        "wincc/gateway", min_length=1, description="Prefix of every topic the gateway uses."
    )
    qos: int = Field(1, ge=0, le=2, description="QoS of tag and alarm messages (0, 1 or 2).")
    retain: bool = Field(True, description="Retain tag messages on the broker.")
    protocol: int = Field(5, description="MQTT protocol: 5 or 311 (3.1.1).")
    username: str | None = Field(None, description="Broker user name.", examples=["edge-01"])
    password: SecretStr | None = Field(
        None, description="Broker password. Prefer password_file.", examples=["change-me"]
    )
    password_file: Path | None = Field(
        None,
        description="File holding the broker password (Docker/systemd secret).",
        examples=["/run/secrets/mqtt_password"],
    )
    ca_file: Path | None = Field(
        None,
        description="PEM file of the CA that signed the broker's certificate (mqtts).",
        examples=["/etc/wincc-gateway/broker-ca.pem"],
    )
    cert_file: Path | None = Field(
        None,
        description="Client certificate (PEM) for mutual TLS.",
        examples=["/etc/wincc-gateway/edge-01.pem"],
    )
    key_file: Path | None = Field(
        None,
        description="Private key (PEM) of cert_file.",
        examples=["/etc/wincc-gateway/edge-01.key"],
    )
    verify_tls: bool = Field(
        True, description="Verify the broker's certificate. Turn off only on a test bench."
    )
    alpn: str | None = Field(
        None,
        description="ALPN protocol offered in the TLS handshake. With preset = "
        '"aws-iot-core" and port 443 it is x-amzn-mqtt-ca (MQTT with a client certificate '
        "on the HTTPS port).",
        examples=["x-amzn-mqtt-ca"],
    )
    publish_rate: float | None = Field(
        None,
        gt=0,
        description="Most messages a second published on this connection, spread evenly; "
        "what cannot go yet waits in the buffer. Not set: as fast as the broker takes "
        "them; with a preset, the platform's limit (100).",
        examples=[100.0],
    )
    keepalive: Duration = Field(
        30.0,
        ge=1,
        description="MQTT keepalive interval. A broker silent for this long (no answer to a "
        "ping sent after half of it) counts as gone: the gateway reconnects.",
    )
    drain_timeout: Duration = Field(
        10.0,
        gt=0,
        description="On stop, longest wait for the broker to take the buffered messages. "
        "What is left stays in the buffer for the next start, and the broker is left so "
        "that it sets the status offline (the will).",
    )
    payload: Literal["per-tag", "batch", "sparkplug", "databus"] = Field(
        "per-tag",
        description='"per-tag": one message per sample on P/tags/<tag path>; "batch": one '
        "message per poll group and cycle on P/batch/<group>, for consumers that ingest in "
        'bulk; "sparkplug": a Sparkplug B edge node on spBv1.0/... (see [sparkplug]); '
        '"databus": Siemens Industrial Edge Databus JSON on ie/.../simatic/v1/... (see '
        "[databus]).",
    )
    batch_max_bytes: ByteSize = Field(
        256 * 1024,
        ge=1024,
        description="Batches larger than this are split into several messages.",
    )

    @field_validator("url")
    @classmethod
    def _url_is_mqtt(cls, url: str | list[str]) -> str | list[str]:
        urls = [url] if isinstance(url, str) else url
        if not urls:
            raise ValueError("give at least one broker URL")
        for one in urls:
            parts = urlsplit(one)
            if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
                raise ValueError(f"{one!r} is not a broker URL like mqtts://broker.example:8883")
        if len({urlsplit(one).scheme for one in urls}) > 1:
            # One TLS setting serves every node: a plain node would get the password in clear.
            raise ValueError("the broker URLs mix mqtt:// and mqtts://; use one scheme for all")
        return url

    @property
    def urls(self) -> list[str]:
        """The broker nodes in the order they are tried (one for a single broker)."""
        return [self.url] if isinstance(self.url, str) else list(self.url)

    @field_validator("protocol", mode="before")
    @classmethod
    def _protocol_is_known(cls, protocol: object) -> object:
        if protocol == "3.1.1":
            return 311
        if protocol not in (5, 311, "5", "311"):
            raise ValueError("the protocol is 5 or 311 (MQTT 3.1.1)")
        return protocol

    @field_validator("topic_prefix")
    @classmethod
    def _prefix_is_a_topic(cls, prefix: str) -> str:
        if not is_topic_text(prefix):
            raise ValueError(
                "a topic prefix cannot contain +, #, control characters or Unicode "
                "noncharacters (brokers close the connection for them)"
            )
        return prefix.strip("/")

    @model_validator(mode="after")
    def _check_tls_and_secret(self) -> Self:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together for mutual TLS")
        tls_keys = [
            key for key in ("ca_file", "cert_file", "key_file") if getattr(self, key) is not None
        ]
        derived = self.preset == "azure-iot-hub" and "url" not in self.model_fields_set
        if tls_keys and urlsplit(self.urls[0]).scheme != "mqtts" and not derived:
            # Ignoring them would send the password and every message in plain TCP.
            raise ValueError(
                f"{', '.join(tls_keys)} set but mqtt.url is mqtt:// (plain TCP, no TLS); "
                "use an mqtts:// url, or remove the TLS keys"
            )
        if self.password is not None and self.password_file is not None:
            raise ValueError("password and password_file are both set; keep one")
        if self.password_file is not None:
            self.password = read_secret_file(self.password_file, "password_file")
        return self


class SparkplugSettings(Section):
    """[sparkplug]: the Sparkplug B edge node, with mqtt.payload = "sparkplug"."""

    group_id: str | None = Field(
        None, description="Sparkplug group id (required with sparkplug).", examples=["plant-1"]
    )
    edge_node_id: str | None = Field(
        None,
        description="Edge node id of this gateway (required with sparkplug).",
        examples=["edge-01"],
    )
    host_id: str | None = Field(
        None,
        description="Primary host id: no births and no data until the host's STATE "
        "(spBv1.0/STATE/<host_id>) says online; when it says offline the node leaves and "
        "connects again.",
        examples=["scada-host"],
    )
    device: Literal["connection", "group"] = Field(
        "connection",
        description='"connection": one device per WinCC connection, named by the WinCC host; '
        '"group": one device per [[poll]] group, named by the group.',
    )

    @field_validator("group_id", "edge_node_id", "host_id")
    @classmethod
    def _id_is_a_level(cls, value: str | None) -> str | None:
        if value is not None and (not value or not is_topic_text(value) or "/" in value):
            raise ValueError("a Sparkplug id is one topic level: not empty, no + / # or controls")
        return value


class DatabusSettings(Section):
    """[databus]: the Industrial Edge Databus connector, with mqtt.payload = "databus"."""

    app_instance: str | None = Field(
        None,
        description="App instance id in the Databus topics ie/<m|d|s>/j/simatic/v1/<app "
        "instance>/... (required with databus).",
        examples=["wincc1"],
    )

    @field_validator("app_instance")
    @classmethod
    def _id_is_a_level(cls, value: str | None) -> str | None:
        if value is not None and (not value or not is_topic_text(value) or "/" in value):
            raise ValueError("the app instance is one topic level: not empty, no + / # or controls")
        return value
