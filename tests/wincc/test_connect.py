"""TLS and transport choices of ``open_client``: what is trusted, what is refused."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import aiohttp
import pytest
import trustme
from pydantic import SecretStr, ValidationError

from gateway.config import load_settings
from gateway.errors import ConfigError, WinCCError, WinCCUnavailable
from gateway.simulator.server import Simulator, SimulatorOptions
from gateway.wincc.connect import build_ssl_context, open_client
from gateway.wincc.rest import RestClient
from gateway.wincc.settings import RestSettings
from tests.wincc.conftest import PASSWORD, USERNAME

LEVEL = "System1.Area1.Tank1.Level"


async def test_open_client_speaks_the_configured_dialect(settings: RestSettings) -> None:
    async with open_client(settings) as client:
        assert isinstance(client, RestClient)
        assert (await client.read(LEVEL)).quality == 128


def test_http_url_is_a_config_error_without_the_flag(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="allow_insecure_http"):
        RestSettings(url="http://127.0.0.1:8443")
    config = tmp_path / "gateway.toml"
    config.write_text('[wincc]\nurl = "http://127.0.0.1:8443"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert any(line.startswith("wincc") for line in caught.value.problems)


async def test_open_client_refuses_http_even_past_validation(settings: RestSettings) -> None:
    unchecked = settings.model_copy(update={"url": "http://127.0.0.1:8443"})
    with pytest.raises(WinCCError, match="allow_insecure_http"):
        async with open_client(unchecked):
            pass


async def test_plain_http_works_when_allowed() -> None:
    options = SimulatorOptions(
        port=0, tags=20, alarms=0, username=USERNAME, password=PASSWORD, change_rate=0.0
    )
    async with Simulator(options) as sim:
        assert sim.url.startswith("http://")
        settings = RestSettings(
            url=sim.url,
            username=USERNAME,
            password=SecretStr(PASSWORD),
            allow_insecure_http=True,
        )
        async with open_client(settings) as client:
            assert (await client.read(LEVEL)).name == LEVEL


@pytest.fixture
def other_ca_file(tmp_path: Path) -> Path:
    """A CA that did not sign the simulator's certificate."""
    path = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return path


@pytest.mark.parametrize("trusted", ["other CA", "system CAs"])
async def test_untrusted_certificate_is_a_clear_error(
    settings: RestSettings, other_ca_file: Path, trusted: str
) -> None:
    ca_file = other_ca_file if trusted == "other CA" else None
    untrusting = settings.model_copy(update={"ca_file": ca_file})
    async with open_client(untrusting) as client:
        with pytest.raises(WinCCError, match=r"not trusted.*wincc\.ca_file") as caught:
            await client.read(LEVEL)
    assert type(caught.value) is WinCCError  # not retried as an outage
    assert isinstance(caught.value.__cause__, aiohttp.ClientSSLError)


async def test_verify_tls_off_accepts_any_certificate(
    settings: RestSettings, other_ca_file: Path
) -> None:
    careless = settings.model_copy(update={"ca_file": other_ca_file, "verify_tls": False})
    async with open_client(careless) as client:
        assert (await client.read(LEVEL)).name == LEVEL


def test_ssl_context_verifies_by_default(settings: RestSettings) -> None:
    context = build_ssl_context(settings)
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.get_ca_certs()  # the ca_file was loaded
    assert build_ssl_context(settings.model_copy(update={"verify_tls": False})) is False


def test_unreadable_ca_file_is_a_config_error(settings: RestSettings, tmp_path: Path) -> None:
    missing = settings.model_copy(update={"ca_file": tmp_path / "missing.pem"})
    with pytest.raises(ConfigError, match=r"wincc\.ca_file"):
        build_ssl_context(missing)


async def test_nobody_listening_is_unavailable(settings: RestSettings) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connections are refused
        closed = settings.model_copy(update={"url": f"https://127.0.0.1:{port}"})
        async with open_client(closed) as client:
            with pytest.raises(WinCCUnavailable, match=r"127\.0\.0\.1"):
                await client.read(LEVEL)
