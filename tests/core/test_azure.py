"""Azure IoT Hub's login and topics; the SAS token checked against Microsoft's own SDK."""

import base64
import importlib.util
import time
from importlib import metadata
from pathlib import Path
from types import ModuleType
from urllib.parse import parse_qs, unquote

import pytest

from gateway.core import azure

KEY = base64.b64encode(bytes(range(32))).decode()


def sdk_module(name: str) -> ModuleType:
    """One module of azure-iot-device's auth package, loaded alone: the SDK as a whole
    wants paho-mqtt 1, the SAS code needs nothing but the standard library."""
    try:
        dist = metadata.distribution("azure-iot-device")
    except metadata.PackageNotFoundError:
        pytest.skip("azure-iot-device is not installed (see .ci/run)")
    path = Path(str(dist.locate_file(f"azure/iot/device/common/auth/{name}.py")))
    spec = importlib.util.spec_from_file_location(f"azure_sdk_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("hub", "device"), [("plant-hub", "edge-01"), ("x.azure-devices.cn", "dev ice/ü")]
)
def test_sas_token_equals_the_sdks_for_the_same_key_resource_and_expiry(
    hub: str, device: str
) -> None:
    sastoken = sdk_module("sastoken")
    signing = sdk_module("signing_mechanism")
    resource = azure.resource_uri(hub, device)
    theirs = sastoken.RenewableSasToken(
        resource, signing.SymmetricKeySigningMechanism(KEY), ttl=3600
    )
    ours = azure.sas_token(resource, azure.decode_key(KEY), theirs.expiry_time)
    assert ours == str(theirs)


def test_sas_token_fields() -> None:
    token = azure.sas_token("plant-hub.azure-devices.net/devices/edge-01", b"k", 1_900_000_000)
    assert token.startswith("SharedAccessSignature ")
    fields = parse_qs(token.removeprefix("SharedAccessSignature "))
    assert unquote(fields["sr"][0]) == "plant-hub.azure-devices.net/devices/edge-01"
    assert fields["se"] == ["1900000000"]
    assert len(base64.b64decode(fields["sig"][0])) == 32  # HMAC-SHA256


def test_login_names() -> None:
    assert azure.hub_host("plant-hub") == "plant-hub.azure-devices.net"
    assert azure.hub_host("plant-hub.azure-devices.cn") == "plant-hub.azure-devices.cn"
    assert (
        azure.username("plant-hub", "edge-01")
        == "plant-hub.azure-devices.net/edge-01/?api-version=2021-04-12"
    )


def test_a_key_that_is_not_base64_is_refused() -> None:
    with pytest.raises(ValueError, match="not base64"):
        azure.decode_key("not a key!")
    with pytest.raises(ValueError, match="empty"):
        azure.decode_key("")


def test_events_topic_carries_url_encoded_properties() -> None:
    topic = azure.events_topic("edge-01", (*azure.JSON_PROPERTIES, ("topic", "tags/A/B")))
    assert topic == (
        "devices/edge-01/messages/events/"
        "$.ct=application%2Fjson%3Bcharset%3Dutf-8&$.ce=utf-8&topic=tags%2FA%2FB"
    )


def test_method_topics() -> None:
    assert azure.method_call("$iothub/methods/POST/write/?$rid=1f") == ("write", "1f")
    assert azure.method_call("$iothub/methods/POST/write/?x=1") is None
    assert azure.method_call("$iothub/methods/POST/a/b/?$rid=1") is None
    assert azure.method_call("devices/x/messages/devicebound/a") is None
    assert azure.method_response_topic(200, "1f") == "$iothub/methods/res/200/?$rid=1f"


def test_token_expiry_uses_the_clock_the_caller_passes() -> None:
    expiry = int(time.time()) + 60
    assert f"&se={expiry}" in azure.sas_token("r", b"k", expiry)
