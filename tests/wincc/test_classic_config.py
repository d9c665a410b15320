"""The settings of each dialect: its keys, their validation, and the client built."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import GatewaySettings, load_settings, redacted
from gateway.config_example import render_example
from gateway.errors import ConfigError
from gateway.wincc.classic import ClassicClient
from gateway.wincc.connect import open_client
from gateway.wincc.settings import ClassicSettings, RestSettings

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


def test_the_rest_dialect_is_the_default_and_needs_no_filter() -> None:
    wincc = GatewaySettings().wincc
    assert isinstance(wincc, RestSettings)
    assert wincc.dialect == "rest"
    assert not hasattr(wincc, "alarm_filter")


def test_an_empty_filter_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, CLASSIC.replace('"GatewayAlarms"', '""')))
    assert caught.value.problems[0].startswith("wincc.alarm_filter:")


def test_environment_selects_the_dialect(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_WINCC__DIALECT", "classic")
    monkeypatch.setenv("GATEWAY_WINCC__ALARM_FILTER", "Plant")
    wincc = GatewaySettings().wincc
    assert isinstance(wincc, ClassicSettings)
    assert (wincc.dialect, wincc.alarm_filter) == ("classic", "Plant")


def test_environment_adds_classic_keys_to_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GATEWAY_WINCC__ALARM_FILTER", "FromEnvironment")
    monkeypatch.setenv("GATEWAY_WINCC__ACCEPT_LANGUAGE", "fr-FR")
    wincc = load_settings(write(tmp_path, CLASSIC)).wincc
    assert isinstance(wincc, ClassicSettings)
    assert (wincc.alarm_filter, wincc.accept_language, wincc.archive) == (
        "FromEnvironment",
        "fr-FR",
        "ProcessValueArchive",
    )


@pytest.mark.parametrize("key", ["accept_language", "archive", "alarm_filter"])
def test_a_classic_key_under_rest_names_the_key_and_its_dialect(tmp_path: Path, key: str) -> None:
    text = f'[wincc]\ndialect = "rest"\n{key} = "x"\n'
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, text))
    assert caught.value.problems == [
        f'wincc.{key}: not a key of the "rest" dialect (it belongs to: classic)'
    ]
    without_dialect = text.replace('dialect = "rest"\n', "")
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, without_dialect))
    assert caught.value.problems[0].startswith(f'wincc.{key}: not a key of the "rest" dialect')


def test_a_classic_key_from_the_environment_under_rest_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GATEWAY_WINCC__ALARM_FILTER", "Plant")
    with pytest.raises(ConfigError) as caught:
        load_settings(None)
    assert caught.value.problems == [
        'wincc.alarm_filter: not a key of the "rest" dialect (it belongs to: classic)'
    ]


def test_error_paths_carry_no_dialect_tag(tmp_path: Path) -> None:
    text = CLASSIC + 'timeout = "soon"\nbogus = 1\n'
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, text.replace("https://", "http://")))
    keys = sorted(problem.split(":")[0] for problem in caught.value.problems)
    assert keys == ["wincc.bogus", "wincc.timeout"]
    assert "wincc.bogus: unknown key" in caught.value.problems
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, CLASSIC.replace("https://", "http://")))
    assert caught.value.problems[0].startswith("wincc: url: http://")


def test_check_config_names_the_dialect_of_a_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write(tmp_path, '[wincc]\nalarm_filter = "x"\n')
    assert main(["check-config", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err == (
        'config: wincc.alarm_filter: not a key of the "rest" dialect (it belongs to: classic)\n'
    )


def test_redacted_classic_settings_hide_secrets_through_a_round_trip(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, CLASSIC))
    dumped = redacted(settings)
    assert dumped["wincc"]["dialect"] == "classic"
    assert dumped["wincc"]["alarm_filter"] == "GatewayAlarms"
    assert dumped["wincc"]["password"] == "**********"
    again = GatewaySettings(**dumped)
    assert isinstance(again.wincc, ClassicSettings)
    assert again.wincc.alarm_filter == "GatewayAlarms"
    assert "secret" not in repr(redacted(again)) + repr(dumped)


def test_an_unknown_dialect_names_the_choices(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, '[wincc]\ndialect = "opc-ua"\n'))
    assert caught.value.problems == [
        "wincc.dialect: Input should be 'rest', 'classic' or 'unified'"
    ]


async def test_open_client_builds_the_classic_client() -> None:
    settings = ClassicSettings(url="https://wincc.example:34569")
    async with open_client(settings) as client:
        assert isinstance(client, ClassicClient)


def test_the_example_lists_the_classic_keys_under_their_dialect() -> None:
    lines = render_example().splitlines()
    start = lines.index('# Only with dialect = "classic":')
    end = lines.index("", start)
    keys = [line.split()[1] for line in lines[start:end] if line.endswith("# not set by default")]
    assert keys == ["accept_language", "archive", "alarm_filter"]
    common = lines[lines.index("[wincc]") : start]
    assert not any("alarm_filter =" in line for line in common)
