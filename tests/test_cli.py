import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli import main

ROOT = Path(__file__).resolve().parent.parent


def test_check_config_prints_the_effective_config_without_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "pw"
    secret.write_text("wincc-very-secret\n", encoding="utf-8")
    config = tmp_path / "g.toml"
    config.write_text(
        f'[wincc]\nusername = "gw"\npassword_file = "{secret}"\n'
        '[mqtt]\npassword = "mqtt-very-secret"\n'
        '[health]\ntoken = "page-very-secret"\n',
        encoding="utf-8",
    )
    assert main(["check-config", "--config", str(config)]) == 0
    out, err = capsys.readouterr()
    assert '"username": "gw"' in out
    assert "very-secret" not in out + err
    assert out.count('"**********"') == 3


def test_check_config_typo_exits_2_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "g.toml"
    config.write_text('[mqtt]\npasword = "mqtt-very-secret"\n', encoding="utf-8")
    assert main(["check-config", "--config", str(config)]) == 2
    out, err = capsys.readouterr()
    assert err == "config: mqtt.pasword: unknown key\n"
    assert "very-secret" not in out + err


def test_check_config_bad_duration_exits_2_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "g.toml"
    config.write_text('[commands]\nmax_age = "30 seconds"\n', encoding="utf-8")
    assert main(["check-config", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("config: commands.max_age: ")


def test_missing_config_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "--config", str(tmp_path / "absent.toml")]) == 2
    assert "cannot read the config file" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["run", "demo", "simulate", "check-config", "browse"])
def test_every_command_has_help(command: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway", command, "--help"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert f"wincc-gateway {command}" in result.stdout


def test_bad_arguments_exit_2() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "run", "--bogus"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 2
