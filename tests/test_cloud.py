"""The cloud presets end to end, against a local mosquitto configured like each platform:
a TLS front that accepts what the platform accepts (AWS: a client certificate and ALPN
``x-amzn-mqtt-ca``), the platform's ACL (Azure: only the device's topics) and packet
size, the simulator as WinCC."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import math
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

import aiomqtt
import orjson
import pytest

from gateway.app import Gateway
from gateway.core import azure
from gateway.core.models import Reading
from gateway.core.timestamps import now_ms
from gateway.simulator.server import Simulator
from tests.cloud_front import CloudFront, cloud_front
from tests.conftest import Mosquitto, Received, TlsFiles, subscribe
from tests.gateway_harness import PREFIX, running_gateway, settings_for

pytestmark = pytest.mark.slow

DEVICE = "edge-01"
HUB = "testhub"
KEY = base64.b64encode(b"a device key of thirty-two bytes").decode()
SETPOINT = "System1.Area1.Tank1.Setpoint"
LEVEL = "System1.Area1.Tank1.Level"
EVENTS = f"devices/{DEVICE}/messages/events/"
METHOD_ANSWERS = "$iothub/methods/res/#"

AZURE_ACL = """\
user cloud
topic readwrite #
topic readwrite $iothub/#

pattern write devices/%c/messages/events/#
pattern read devices/%c/messages/devicebound/#
pattern read $iothub/methods/POST/#
pattern write $iothub/methods/res/#
"""
"""What IoT Hub lets a device do; ``cloud`` stands for the hub's service side."""


class PlatformBroker(Mosquitto):
    """mosquitto with a platform's ACL (anything else is denied) and packet size."""

    def __init__(
        self, folder: Path, acl: str | None, max_packet_size: int, tls: TlsFiles | None
    ) -> None:
        super().__init__(folder, max_packet_size=max_packet_size, tls=tls)
        self.acl = acl

    def _write_config(self) -> Path:
        path = super()._write_config()
        if self.acl is not None:
            acl = self.folder / "acl"
            acl.write_text(self.acl, encoding="utf-8")
            with path.open("a", encoding="utf-8") as config:
                config.write(f"acl_file {acl}\n")
        return path


@contextlib.asynccontextmanager
async def platform_broker(
    tmp_path: Path, acl: str | None, max_packet_size: int, tls: TlsFiles | None = None
) -> AsyncIterator[PlatformBroker]:
    """The platform's broker: plain TCP behind a ``cloud_front``, or itself speaking TLS
    with a client certificate required."""
    broker = PlatformBroker(tmp_path / "platform", acl, max_packet_size, tls)
    await broker.start()
    try:
        yield broker
    finally:
        await broker.stop()


def azure_config(
    sim: Simulator, broker: Mosquitto, front: CloudFront, tls: TlsFiles, tmp_path: Path, **azure_
) -> dict[str, Any]:
    key = tmp_path / "device.key"
    key.write_text(KEY + "\n", encoding="utf-8")
    poll = [{"name": "fast", "interval": "200ms", "tags": ["System1.Area1.Tank1.*"]}]
    config = settings_for(sim, broker, tls, tmp_path, poll=poll, commands={"writable": [SETPOINT]})
    config["mqtt"] = {
        "preset": "azure-iot-hub",
        "url": f"mqtts://localhost:{front.port}",
        "ca_file": str(tls.ca_file),
        "topic_prefix": PREFIX,
    }
    config["azure"] = {"hub": HUB, "device_id": DEVICE, "device_key_file": str(key), **azure_}
    return config


def properties_of(topic: str) -> dict[str, str]:
    """The property bag of a telemetry topic, decoded."""
    assert topic.startswith(EVENTS), topic
    return {key: values[0] for key, values in parse_qs(topic[len(EVENTS) :]).items()}


async def test_azure_telemetry_flows_on_the_device_topic_and_the_sas_token_is_renewed(
    simulator: Simulator, tls: TlsFiles, tmp_path: Path
) -> None:
    async with (
        platform_broker(tmp_path, AZURE_ACL, 256 * 1024 + 1024) as broker,
        cloud_front(tls, broker.port) as front,
        subscribe(
            broker,
            "#",
            protocol=aiomqtt.ProtocolVersion.V311,
            identifier="cloud",
            username="cloud",
        ) as cloud,
    ):
        config = azure_config(simulator, broker, front, tls, tmp_path, sas_lifetime="3s")
        async with running_gateway(config):

            def sample_of(tag: str):  # type: ignore[no-untyped-def]
                return lambda ms: any(properties_of(m.topic).get("tag") == tag for m in ms)

            messages = await cloud.wait_for(sample_of(LEVEL))
            connects = await front.wait_for_connects(3, timeout=15)
        sample = next(m for m in messages if properties_of(m.topic).get("tag") == LEVEL)
        assert properties_of(sample.topic) == {
            "$.ct": "application/json;charset=utf-8",
            "$.ce": "utf-8",
            "topic": "tags/System1/Area1/Tank1/Level",
            "tag": LEVEL,
        }
        assert sample.topic.startswith(EVENTS + "$.ct=application%2Fjson%3Bcharset%3Dutf-8&")
        body = sample.json()
        assert {"value", "quality", "good", "ts", "seq"} <= set(body)
        statuses = [m for m in messages if properties_of(m.topic)["topic"] == "status"]
        assert statuses[0].json()["state"] == "online"
        assert not any(m.retain for m in messages)

    # Every connection: MQTT 3.1.1, the device id, the hub's user name, a fresh SAS token
    # for the device's resource, signed with its key, expiring in the configured 3 s.
    resource = azure.resource_uri(HUB, DEVICE)
    expiries = []
    for connect in connects[:3]:
        assert connect.protocol == 4
        assert connect.client_id == DEVICE
        assert connect.username == f"{HUB}.azure-devices.net/{DEVICE}/?api-version=2021-04-12"
        assert connect.password is not None
        fields = parse_qs(connect.password.removeprefix("SharedAccessSignature "))
        assert unquote(fields["sr"][0]) == resource
        expiry = int(fields["se"][0])
        assert connect.password == azure.sas_token(resource, base64.b64decode(KEY), expiry)
        expiries.append(expiry)
    assert len({c.password for c in connects[:3]}) == 3
    assert expiries == sorted(expiries)
    assert front.sni[0] == "localhost"
    # Nothing anywhere but on the device's events topic, the only one its ACL allows.
    assert all(m.topic.startswith(EVENTS) for m in messages)


async def call_method(
    client: aiomqtt.Client, answers: Any, name: str, request_id: str, body: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    """A direct method call as the hub makes it; its status and answer."""
    await client.publish(f"$iothub/methods/POST/{name}/?$rid={request_id}", orjson.dumps(body), 1)

    def answered(ms: list[Received]) -> Received | None:
        suffix = f"/?$rid={request_id}"
        return next((m for m in ms if m.topic.endswith(suffix)), None)

    messages: list[Received] = await answers.wait_for(lambda ms: answered(ms) is not None)
    answer = answered(messages)
    assert answer is not None
    status = answer.topic.removeprefix("$iothub/methods/res/").split("/")[0]
    return int(status), answer.json()


async def test_azure_direct_methods_write_through_the_command_policy(
    simulator: Simulator, tls: TlsFiles, tmp_path: Path
) -> None:
    async with (
        platform_broker(tmp_path, AZURE_ACL, 256 * 1024 + 1024) as broker,
        cloud_front(tls, broker.port) as front,
    ):
        alarm_id = next(iter(simulator.plant.alarms))
        simulator.plant.raise_alarm(alarm_id, now_ms=now_ms())
        config = azure_config(simulator, broker, front, tls, tmp_path)
        config["commands"]["acknowledge"] = ["**"]
        async with (
            subscribe(
                broker,
                METHOD_ANSWERS,
                EVENTS + "#",
                protocol=aiomqtt.ProtocolVersion.V311,
                identifier="cloud",
                username="cloud",
            ) as answers,
            running_gateway(config),
            aiomqtt.Client(
                "127.0.0.1", broker.port, username="cloud", identifier="cloud-methods"
            ) as hub,
        ):
            # The alarm's state reached the hub: the gateway knows it.
            await answers.wait_for(
                lambda ms: any(
                    properties_of(m.topic)["topic"].startswith("alarms/")
                    for m in ms
                    if m.topic.startswith(EVENTS)
                )
            )
            status, body = await call_method(
                hub, answers, "write", "1", {"tag": SETPOINT, "value": 42.5, "id": "w-1"}
            )
            assert (status, body["ok"], body["value"], body["id"]) == (200, True, 42.5, "w-1")
            assert (SETPOINT, 42.5) in simulator.write_log

            writes = len(simulator.write_log)
            status, body = await call_method(hub, answers, "write", "2", {"tag": LEVEL, "value": 1})
            assert (status, body["error"]) == (400, "tag is not in commands.writable")
            status, body = await call_method(hub, answers, "write", "3", {"value": 1})
            assert (status, body["ok"]) == (400, False)
            status, body = await call_method(hub, answers, "reboot", "4", {})
            assert status == 400
            assert "unknown method 'reboot'" in body["error"]
            assert len(simulator.write_log) == writes

            status, body = await call_method(
                hub, answers, "ack", "5", {"alarm": alarm_id, "comment": "seen", "id": "a-1"}
            )
            assert (status, body) == (
                200,
                {"id": "a-1", "ok": True, "error": None, "alarm": alarm_id},
            )
            assert simulator.ack_log == [(alarm_id, "seen")]


async def test_aws_connects_with_alpn_on_the_https_port_and_mutual_tls(
    simulator: Simulator, tls: TlsFiles, tmp_path: Path
) -> None:
    async with (
        platform_broker(tmp_path, None, 128 * 1024 + 1024) as broker,
        cloud_front(tls, broker.port, alpn="x-amzn-mqtt-ca", client_cert=True) as front,
        subscribe(broker, f"{PREFIX}/tags/#") as cloud,
    ):
        # A client that offers no ALPN is turned away, as AWS IoT Core does on port 443.
        plain = ssl.create_default_context(cafile=tls.ca_file)
        plain.load_cert_chain(tls.client_cert, tls.client_key)
        with pytest.raises(aiomqtt.MqttError):
            async with aiomqtt.Client("localhost", front.port, tls_context=plain, timeout=5):
                pass
        assert front.refused == ["ALPN None"]

        poll = [{"name": "fast", "interval": "200ms", "tags": ["System1.Area1.Tank1.*"]}]
        config = settings_for(simulator, broker, tls, tmp_path, poll=poll)
        config["mqtt"] = {
            "preset": "aws-iot-core",
            "url": f"mqtts://localhost:{front.port}",
            "alpn": "x-amzn-mqtt-ca",
            "ca_file": str(tls.ca_file),
            "cert_file": str(tls.client_cert),
            "key_file": str(tls.client_key),
            "client_id": DEVICE,
            "topic_prefix": PREFIX,
        }
        async with running_gateway(config):
            await cloud.wait_for(lambda ms: any(m.topic.endswith("/Tank1/Level") for m in ms))
        assert front.connects[0].client_id == DEVICE
        assert front.connects[0].protocol == 5
        assert "localhost" in front.sni


async def burst(gateway: Gateway, count: int) -> None:
    """``count`` changes of as many tags, committed to the buffer at once."""
    samples = [(Reading(f"Burst.T{n}", n, 192, now_ms()), 1, True) for n in range(count)]
    await gateway.buffer.append(gateway.output.samples("burst", samples, backfill=False))


@contextlib.asynccontextmanager
async def arrivals_at(broker: Mosquitto) -> AsyncIterator[asyncio.subprocess.Process]:
    """A subscriber in a process of its own (so that nothing in this one delays it) that
    prints each message with the time it arrived."""
    tls = broker.tls
    assert tls is not None
    process = await asyncio.create_subprocess_exec(
        *("mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker.port), "-u", "cloud"),
        *("--cafile", str(tls.ca_file), "--cert", str(tls.client_cert)),
        *("--key", str(tls.client_key), "-i", "cloud-counter", "-q", "1", "-t", "#"),
        *("-F", "%U %t %p"),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        await broker.line_with("as cloud-counter")
        yield process
    finally:
        process.terminate()
        await process.wait()


@pytest.mark.parametrize(
    "platform",
    [("azure-iot-hub", 1000, 20_000), ("aws-iot-core", 100, 1_000)],
    ids=["azure", "aws"],
)
async def test_a_burst_is_delivered_at_the_rate_limit_never_over_it_and_nothing_lost(
    platform: tuple[str, int, int], simulator: Simulator, tls: TlsFiles, tmp_path: Path
) -> None:
    preset, rate, count = platform
    arrivals: dict[int, int] = {}
    values: set[int] = set()
    times: list[float] = []
    async with (
        platform_broker(
            tmp_path, AZURE_ACL if preset == "azure-iot-hub" else None, 300_000, tls
        ) as broker,
        arrivals_at(broker) as counter,
    ):
        # Straight to the broker, with the client certificate (Azure: X.509 instead of
        # a SAS token): nothing else in this process stands between the gateway's
        # pacing and the wire.
        poll = [{"name": "fast", "interval": "1s", "tags": ["System1.Area1.Tank1.*"]}]
        config = settings_for(simulator, broker, tls, tmp_path, poll=poll)
        config["mqtt"] = {
            "preset": preset,
            "url": f"mqtts://localhost:{broker.port}",
            "ca_file": str(tls.ca_file),
            "cert_file": str(tls.client_cert),
            "key_file": str(tls.client_key),
            "topic_prefix": PREFIX,
            "publish_rate": rate,
        }
        if preset == "azure-iot-hub":
            config["azure"] = {"hub": HUB, "device_id": DEVICE}

        async def count_arrivals() -> None:
            assert counter.stdout is not None
            while line := await counter.stdout.readline():
                stamp, topic, payload = line.decode().split(" ", 2)
                at = float(stamp)
                arrivals[math.floor(at)] = arrivals.get(math.floor(at), 0) + 1
                if "Burst" in topic:
                    values.add(orjson.loads(payload)["value"])
                    times.append(at)
                    if len(values) == count:
                        return

        async with running_gateway(config) as gateway:
            counting = asyncio.create_task(count_arrivals())
            await burst(gateway, count)
            async with asyncio.timeout(count / rate * 1.5 + 15):
                await counting
    assert values == set(range(count))  # nothing lost
    assert max(arrivals.values()) <= rate, sorted(arrivals.items())
    took = times[-1] - times[0]
    assert count / rate * 0.9 <= took <= count / rate * 1.15 + 1


async def test_azure_batches_are_split_below_the_hub_message_size(
    simulator: Simulator, tls: TlsFiles, tmp_path: Path
) -> None:
    """A read of 6,000 tags is about 600 KB of JSON: it reaches the hub in parts, each
    under its 256 KB limit (the broker here closes the connection above it)."""
    count = 6_000
    async with (
        platform_broker(tmp_path, AZURE_ACL, 256 * 1024 + 1024) as broker,
        cloud_front(tls, broker.port) as front,
        subscribe(
            broker,
            EVENTS + "#",
            protocol=aiomqtt.ProtocolVersion.V311,
            identifier="cloud",
            username="cloud",
        ) as cloud,
    ):
        config = azure_config(simulator, broker, front, tls, tmp_path)
        config["mqtt"]["payload"] = "batch"
        async with running_gateway(config) as gateway:
            readings = [
                (Reading(f"Big.Tag{n:05d}", n, 192, now_ms()), 1, True) for n in range(count)
            ]
            await gateway.buffer.append(gateway.output.samples("big", readings, backfill=False))

            def samples_in(ms: list[Received]) -> int:
                parts = [m for m in ms if properties_of(m.topic)["topic"] == "batch/big"]
                return sum(len(m.json()["samples"]) for m in parts)

            messages = await cloud.wait_for(lambda ms: samples_in(ms) >= count)
        parts = [m for m in messages if properties_of(m.topic)["topic"] == "batch/big"]
        assert len(parts) >= 3
        assert max(len(m.payload) for m in parts) <= 255 * 1024
        assert sorted(s["value"] for m in parts for s in m.json()["samples"]) == list(range(count))
        assert len(front.connects) == 1  # never disconnected for a packet too large
