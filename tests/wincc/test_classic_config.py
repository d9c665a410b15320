"""The settings of the classic dialect: its keys, their validation, and the client built."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import GatewaySettings, WinCCSettings, load_settings
from gateway.errors import ConfigError
from gateway.wincc.classic import ClassicClient
from gateway.wincc.connect import open_client

CLASSIC = """\
[wincc]
url = "https://wincc.example:34569"
dialect = "classic"
username = "gateway"
password = "secret"
accept_language = "de-DE"
archive = "ProcessValueArchive"
alarm_filter = "GatewayAlarms"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_classic_keys_load(tmp_path: Path) -> None:
    wincc = load_settings(write(tmp_path, CLASSIC)).wincc
    assert (wincc.dialect, wincc.accept_language, wincc.archive, wincc.alarm_filter) == (
        "classic",
        "de-DE",
        "ProcessValueArchive",
        "GatewayAlarms",
    )


def test_classic_alarms_need_a_filter(tmp_path: Path) -> None:
    text = CLASSIC.replace('alarm_filter = "GatewayAlarms"\n', "")
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, text))
    assert caught.value.problems == [
        'wincc.alarm_filter: required with dialect = "classic" while alarms.enabled = true: '
        "the name of a REST filter configured in WinCC Alarm Logging"
    ]
    settings = load_settings(write(tmp_path, text + "[alarms]\nenabled = false\n"))
    assert settings.wincc.alarm_filter is None


def test_the_rest_dialect_needs_no_filter() -> None:
    assert GatewaySettings().wincc.alarm_filter is None


def test_an_empty_filter_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, CLASSIC.replace('"GatewayAlarms"', '""')))
    assert caught.value.problems[0].startswith("wincc.alarm_filter:")


def test_environment_selects_the_dialect(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_WINCC__DIALECT", "classic")
    monkeypatch.setenv("GATEWAY_WINCC__ALARM_FILTER", "Plant")
    wincc = GatewaySettings().wincc
    assert (wincc.dialect, wincc.alarm_filter) == ("classic", "Plant")


def test_an_unknown_dialect_names_the_choices(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, '[wincc]\ndialect = "unified"\n'))
    assert caught.value.problems[0].startswith("wincc.dialect:")
    assert "'classic'" in caught.value.problems[0]


async def test_open_client_builds_the_classic_client() -> None:
    settings = WinCCSettings(url="https://wincc.example:34569", dialect="classic")
    async with open_client(settings) as client:
        assert isinstance(client, ClassicClient)
