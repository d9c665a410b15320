"""``wincc-gateway simulate``: flag checking, and a real run stopped by a signal."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import ssl
import sys
from pathlib import Path

import aiohttp
import pytest

from gateway.simulator.cli import _options, configure_parser, run

REPO = Path(__file__).resolve().parents[2]
# a stand-in for the console script, which lives in gateway/cli.py
MAIN = (
    "import argparse, sys\n"
    "from gateway.simulator.cli import configure_parser, run\n"
    "parser = argparse.ArgumentParser(prog='wincc-gateway simulate')\n"
    "configure_parser(parser)\n"
    "sys.exit(run(parser.parse_args()))\n"
)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="wincc-gateway simulate")
    configure_parser(parser)
    return parser.parse_args(argv)


def test_defaults_follow_the_spec() -> None:
    args = parse()
    assert (args.host, args.port, args.tags, args.username, args.password) == (
        "127.0.0.1",
        8443,
        1000,
        "demo",
        "demo",
    )
    assert not args.tls


def test_help_documents_the_fault_endpoint() -> None:
    parser = argparse.ArgumentParser(prog="wincc-gateway simulate")
    configure_parser(parser)
    text = parser.format_help()
    for word in ("/_sim/faults", "/_sim/stats", "curl", "latency_ms", "drop_rate", "--tls"):
        assert word in text


@pytest.mark.parametrize(
    "argv",
    [
        ["--change-rate", "-0.1"],
        ["--bad-quality", "1.5"],
        ["--error-rate", "nan"],
        ["--latency", "-5"],
        ["--tags", "0"],
        ["--port", "70000"],
        ["--token-ttl", "0"],
        ["--clock-offset", "nan"],
        ["--tags", "many"],
    ],
)
def test_bad_flags_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse(*argv)
    assert exit_info.value.code == 2
    assert argv[0] in capsys.readouterr().err


def test_fault_flags_set_the_initial_faults() -> None:
    options = _options(parse("--clock-offset", "-3600", "--html-login", "--unauthorized"))
    assert not isinstance(options, str)
    assert (options.clock_offset, options.html_login, options.unauthorized) == (
        -3600.0,
        True,
        True,
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--cert", "cert.pem"], "--cert and --key go together"),
        (["--cert", "/nonexistent.pem", "--key", "/nonexistent.key"], "no such file"),
        (["--tags", "5", "--alarms", "20"], "5 tags carry at most 4 alarms"),
    ],
)
def test_bad_combinations_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(parse(*argv)) == 2
    assert message in capsys.readouterr().err


def test_unloadable_certificate_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "cert.pem").write_text("not a certificate")
    (tmp_path / "key.pem").write_text("not a key")
    argv = ["--cert", str(tmp_path / "cert.pem"), "--key", str(tmp_path / "key.pem")]
    assert run(parse(*argv)) == 2
    assert "--cert/--key" in capsys.readouterr().err


@pytest.mark.parametrize(("tls", "dialect"), [(False, "rest"), (True, "rest"), (True, "unified")])
async def test_runs_until_sigterm(tls: bool, dialect: str) -> None:
    argv = ["--port", "0", "--tags", "50", "--alarms", "2", "--seed", "1", "--dialect", dialect]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        MAIN,
        *argv,
        *(["--tls"] if tls else []),
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 20)).decode()
        match = re.search(r"on (https?://\S+) \(user 'demo', password 'demo'", line)
        assert match, line
        base = match.group(1)
        if dialect == "unified":
            assert base.endswith("/graphql/"), line
            base = base.removesuffix("/graphql/")
        context: ssl.SSLContext | bool = True
        if tls:
            ca = re.search(r"CA certificate (\S+?)\)", line)
            assert ca, line
            context = ssl.create_default_context(cafile=ca.group(1))
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{base}/_sim/stats", ssl=context) as response,
        ):
            assert (await response.json())["tags"] == 50
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 20) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
