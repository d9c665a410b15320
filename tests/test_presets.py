"""``mqtt.preset``: what each platform fixes is set, what it cannot take is refused by
``check-config``, naming the key, never echoing a secret."""

import base64
import contextlib
import ssl
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import load_settings
from gateway.errors import ConfigError
from gateway.mqtt.cloud import alpn_protocols, login_source, pacer_for
from gateway.mqtt.session import build_tls_context
from tests.conftest import TlsFiles

KEY = base64.b64encode(b"device-key-for-the-tests-0123456").decode()


def write(tmp_path: Path, text: str) -> Path:
    key = tmp_path / "device.key"
    key.write_text(KEY + "\n", encoding="utf-8")
    config = tmp_path / "g.toml"
    config.write_text(text.replace("KEYFILE", str(key)), encoding="utf-8")
    return config


AZURE = """
[mqtt]
preset = "azure-iot-hub"
{mqtt}
[azure]
hub = "plant-hub"
device_id = "edge-01"
device_key_file = "KEYFILE"
"""

AWS = """
[mqtt]
preset = "aws-iot-core"
url = "mqtts://abc-ats.iot.eu-central-1.amazonaws.com:{port}"
cert_file = "{cert}"
key_file = "{cert}"
{mqtt}
"""


def refusals(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> list[str]:
    assert main(["check-config", "--config", str(write(tmp_path, text))]) == 2
    out, err = capsys.readouterr()
    assert KEY not in out + err
    return err.splitlines()


@pytest.mark.parametrize("preset", ["aws", "azure"])
def test_qos_2_is_refused_at_check_config(
    preset: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (AZURE if preset == "azure" else AWS).format(mqtt="qos = 2", port=8883, cert="/c")
    name = "Azure IoT Hub" if preset == "azure" else "AWS IoT Core"
    assert refusals(tmp_path, text, capsys) == [
        f"config: mqtt.qos = 2: {name} closes the connection on QoS 2; use 0 or 1"
    ]


def test_azure_fixes_protocol_client_id_retain_url_batch_size_and_rate(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, AZURE.format(mqtt='payload = "batch"')))
    mqtt = settings.mqtt
    assert mqtt.protocol == 311
    assert mqtt.client_id == "edge-01"
    assert mqtt.retain is False
    assert mqtt.url == "mqtts://plant-hub.azure-devices.net:8883"
    assert mqtt.batch_max_bytes == 255 * 1024
    assert mqtt.publish_rate == 100


def test_azure_refuses_what_the_hub_cannot_take(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = AZURE.format(
        mqtt='protocol = 5\nretain = true\nclient_id = "other"\nusername = "u"\n'
        'batch_max_bytes = "1MB"\nkeepalive = "30m"\nurl = "mqtt://h:1883"'
    )
    assert refusals(tmp_path, text, capsys) == [
        "config: mqtt.protocol = 5: Azure IoT Hub takes only MQTT 3.1.1 (311)",
        "config: mqtt.retain = true: Azure IoT Hub does not keep retained messages",
        "config: mqtt.batch_max_bytes = 1000000: Azure IoT Hub takes messages of at most "
        "262144 bytes; set at most 261120",
        "config: mqtt.keepalive: Azure IoT Hub allows at most 1177 s",
        "config: mqtt.url: Azure IoT Hub takes MQTT only over TLS (mqtts://)",
        "config: mqtt.client_id: with Azure IoT Hub it is azure.device_id; remove it",
        "config: mqtt.username: set by the gateway for Azure IoT Hub (from azure.device_key_file)",
    ]


@pytest.mark.parametrize("payload", ["sparkplug", "databus"])
def test_azure_refuses_sparkplug_and_databus(
    payload: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = AZURE.format(mqtt=f'payload = "{payload}"')
    text += '[sparkplug]\ngroup_id = "g"\nedge_node_id = "n"\n[databus]\napp_instance = "a"\n'
    [line] = refusals(tmp_path, text, capsys)
    assert line.startswith(f'config: mqtt.payload = "{payload}": Azure IoT Hub takes only')
    assert "Event Grid" in line


def test_azure_needs_a_device_and_a_key_or_a_certificate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert refusals(tmp_path, '[mqtt]\npreset = "azure-iot-hub"\n', capsys) == [
        "config: azure.hub and azure.device_id: required with mqtt.preset = azure-iot-hub"
    ]
    text = AZURE.replace('device_key_file = "KEYFILE"', "")
    assert refusals(tmp_path, text.format(mqtt=""), capsys) == [
        "config: azure.device_key_file or mqtt.cert_file/key_file: Azure IoT Hub needs "
        "exactly one, the device's symmetric key or its X.509 certificate"
    ]
    (tmp_path / "bad.key").write_text("not base64!", encoding="utf-8")
    text = AZURE.replace("KEYFILE", str(tmp_path / "bad.key")).format(mqtt="")
    config = tmp_path / "bad.toml"
    config.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert caught.value.problems == [
        "azure.device_key_file: the device key is not base64 (copy the primary key)"
    ]


def test_azure_login_is_a_fresh_sas_token_renewed_before_it_expires(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, AZURE.format(mqtt="") + 'sas_lifetime = "10m"\n'))
    login = login_source(settings)()
    assert login.username == "plant-hub.azure-devices.net/edge-01/?api-version=2021-04-12"
    assert login.password is not None
    assert login.password.startswith(
        "SharedAccessSignature sr=plant-hub.azure-devices.net%2Fdevices%2Fedge-01&sig="
    )
    assert login.renew_after == 480.0
    assert "device-key" not in repr(settings) + str(settings.model_dump())


def test_azure_with_a_certificate_has_no_password(tmp_path: Path) -> None:
    text = AZURE.replace('device_key_file = "KEYFILE"', "").format(
        mqtt='cert_file = "/c.pem"\nkey_file = "/c.key"'
    )
    login = login_source(load_settings(write(tmp_path, text)))()
    assert login.password is None
    assert login.renew_after is None


def test_aws_refuses_missing_endpoint_and_certificate_and_a_rate_above_100(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = '[mqtt]\npreset = "aws-iot-core"\npublish_rate = 150\nclient_id = "' + "c" * 129 + '"\n'
    lines = refusals(tmp_path, text, capsys)
    assert lines == [
        "config: mqtt.client_id: AWS IoT Core allows at most 128 bytes",
        "config: mqtt.publish_rate = 150: AWS IoT Core throttles a connection above 100 "
        "publishes a second",
        "config: mqtt.url: with AWS IoT Core, your account's device data endpoint over TLS, "
        "mqtts://<id>-ats.iot.<region>.amazonaws.com:8883 (AWS IoT console, Settings)",
        "config: mqtt.cert_file and mqtt.key_file: AWS IoT Core needs the thing's "
        "certificate and private key",
    ]


def test_aws_paces_messages_and_bytes_and_caps_batches(tmp_path: Path) -> None:
    text = AWS.format(port=8883, cert="/c", mqtt="")
    mqtt = load_settings(write(tmp_path, text)).mqtt
    assert mqtt.batch_max_bytes == 127 * 1024
    pacer = pacer_for(mqtt)
    assert pacer is not None and pacer.bytes is not None
    assert (pacer.messages.limit, pacer.bytes.limit) == (100, 512 * 1024)


def test_aws_on_port_443_offers_alpn_x_amzn_mqtt_ca(tmp_path: Path) -> None:
    on_443 = load_settings(write(tmp_path, AWS.format(port=443, cert="/c", mqtt=""))).mqtt
    assert alpn_protocols(on_443) == ["x-amzn-mqtt-ca"]
    on_8883 = load_settings(write(tmp_path, AWS.format(port=8883, cert="/c", mqtt=""))).mqtt
    assert alpn_protocols(on_8883) == []
    chosen = load_settings(
        write(tmp_path, AWS.format(port=8883, cert="/c", mqtt='alpn = "x-amzn-mqtt-ca"'))
    ).mqtt
    assert alpn_protocols(chosen) == ["x-amzn-mqtt-ca"]


def handshake(client: ssl.SSLContext, server: ssl.SSLContext) -> tuple[str | None, str | None]:
    """A TLS handshake in memory; the ALPN protocol each side settled on."""
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    near = client.wrap_bio(to_client, to_server, server_hostname="localhost")
    far_in, far_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    far = server.wrap_bio(far_in, far_out, server_side=True)
    for _ in range(10):
        for side in (near, far):
            with contextlib.suppress(ssl.SSLWantReadError):
                side.do_handshake()
        far_in.write(to_server.read())
        to_client.write(far_out.read())
    return near.selected_alpn_protocol(), far.selected_alpn_protocol()


@pytest.mark.parametrize(("port", "expected"), [(443, "x-amzn-mqtt-ca"), (8883, None)])
def test_the_tls_context_offers_alpn_in_a_real_handshake(
    port: int, expected: str | None, tmp_path: Path, tls: TlsFiles
) -> None:
    text = AWS.format(port=port, cert=tls.client_cert, mqtt=f'ca_file = "{tls.ca_file}"')
    settings = load_settings(
        write(
            tmp_path,
            text.replace(f'key_file = "{tls.client_cert}"', f'key_file = "{tls.client_key}"'),
        )
    ).mqtt
    context = build_tls_context(settings)
    assert context is not None
    server = tls.server_context()
    server.set_alpn_protocols(["x-amzn-mqtt-ca"])
    assert handshake(context, server) == (expected, expected)


def test_without_a_preset_nothing_is_paced() -> None:
    settings = load_settings(None)
    assert settings.mqtt.publish_rate is None
    assert pacer_for(settings.mqtt) is None
    assert build_tls_context(settings.mqtt) is None
