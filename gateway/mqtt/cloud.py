"""What a connection to a cloud platform needs beyond a broker URL: the login made anew
for every connection (an Azure SAS token expires, so the session reconnects with a fresh
one before it does), the TLS ALPN protocol (AWS IoT Core on port 443), the pacer of the
platform's publish rate.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from gateway.core import azure
from gateway.core.pacing import Pacer
from gateway.core.platforms import AWS_ALPN, PLATFORMS

if TYPE_CHECKING:
    from gateway.config import GatewaySettings
    from gateway.mqtt_settings import MqttSettings

RENEW_SHARE = 0.8
"""Share of a SAS token's lifetime after which the session reconnects with a fresh one."""


@dataclass(slots=True, frozen=True)
class Login:
    """The user name and password of one connection; ``renew_after``: seconds after
    which the connection is made again with a fresh login (None: never)."""

    username: str | None
    password: str | None
    renew_after: float | None = None


LoginSource = Callable[[], Login]
"""Makes the login of the next connection."""


def login_source(settings: GatewaySettings) -> LoginSource:
    """The login the settings describe: a fresh SAS token per connection for Azure IoT
    Hub with a device key, else the configured user name and password."""
    mqtt, hub = settings.mqtt, settings.azure
    if mqtt.preset != "azure-iot-hub":
        return static_login(mqtt)
    assert hub.hub is not None and hub.device_id is not None  # checked by the config
    user = azure.username(hub.hub, hub.device_id)
    if hub.device_key is None:  # X.509: the certificate is the login
        return lambda: Login(user, None)
    key = azure.decode_key(hub.device_key.get_secret_value())
    resource = azure.resource_uri(hub.hub, hub.device_id)
    lifetime = float(hub.sas_lifetime)

    def fresh() -> Login:
        expiry = int(time.time() + lifetime)
        return Login(user, azure.sas_token(resource, key, expiry), lifetime * RENEW_SHARE)

    return fresh


def static_login(mqtt: MqttSettings) -> LoginSource:
    """The configured user name and password, the same for every connection."""
    password = mqtt.password.get_secret_value() if mqtt.password is not None else None
    return lambda: Login(mqtt.username, password)


def alpn_protocols(mqtt: MqttSettings) -> list[str]:
    """ALPN protocols to offer: the configured one, or AWS IoT Core's on port 443."""
    if mqtt.alpn is not None:
        return [mqtt.alpn]
    if mqtt.preset == "aws-iot-core" and any(urlsplit(url).port == 443 for url in mqtt.urls):
        return [AWS_ALPN]
    return []


def pacer_for(mqtt: MqttSettings) -> Pacer | None:
    """The publish rate limits of the connection: the configured rate, and a platform's
    byte rate."""
    if mqtt.publish_rate is None:
        return None
    platform = PLATFORMS.get(mqtt.preset) if mqtt.preset is not None else None
    return Pacer(mqtt.publish_rate, platform.bytes_per_s if platform is not None else None)
