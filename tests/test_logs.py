"""Log output: JSON lines a collector can parse, levels that filter, secrets never written."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from urllib.parse import quote

import orjson
import pytest

from gateway.logs import MASK, setup_logging

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
SECRET = "s3cr/et+p@ss w0rd"


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """setup_logging rewires the root logger; put back what pytest had."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {name: logging.getLogger(name).level for name in ("aiohttp.access", "mqtt")}
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    for name, old in levels.items():
        logging.getLogger(name).setLevel(old)


def fail(exc: Exception) -> None:
    """Raise ``exc``, as a library would deep inside a call."""
    raise exc


def lines_of(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().err.splitlines()


def test_json_lines_carry_ts_level_logger_msg(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("info", "json")
    logging.getLogger("gateway.polling").warning("group %s: cannot read %s", "fast", "A.B")
    logging.getLogger("gateway.app").info('quotes " and\nnewlines stay one line')

    lines = lines_of(capsys)
    assert len(lines) == 2
    first, second = (orjson.loads(line) for line in lines)
    assert set(first) == {"ts", "level", "logger", "msg"}
    assert TS.match(first["ts"])
    assert first["level"] == "warning"
    assert first["logger"] == "gateway.polling"
    assert first["msg"] == "group fast: cannot read A.B"
    assert second["msg"] == 'quotes " and\nnewlines stay one line'


def test_json_line_carries_the_exception(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("info", "json")
    try:
        fail(ValueError("boom"))
    except ValueError:
        logging.getLogger("gateway.app").exception("the gateway stopped")

    (line,) = lines_of(capsys)
    body = orjson.loads(line)
    assert body["msg"] == "the gateway stopped"
    assert "ValueError: boom" in body["exc"]
    assert "Traceback" in body["exc"]


def test_text_format_is_one_readable_line(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("info", "text")
    logging.getLogger("gateway.mqtt.session").info("connected to broker %s", "mqtt://b:1883")

    (line,) = lines_of(capsys)
    ts, level, rest = line.split(maxsplit=2)
    assert TS.match(ts)
    assert level == "INFO"
    assert rest == "gateway.mqtt.session: connected to broker mqtt://b:1883"


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_levels_filter(capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    setup_logging("warning", fmt)
    log = logging.getLogger("gateway.test")
    log.debug("debug line")
    log.info("info line")
    log.warning("warning line")
    log.error("error line")

    output = capsys.readouterr().err
    assert "debug line" not in output
    assert "info line" not in output
    assert "warning line" in output
    assert "error line" in output


def test_debug_level_shows_debug(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("debug", "text")
    logging.getLogger("gateway.test").debug("debug line")
    assert "debug line" in capsys.readouterr().err


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_secrets_are_masked_wherever_they_appear(
    capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    setup_logging("debug", fmt, [SECRET, "other-secret"])
    log = logging.getLogger("some.library")
    log.info("login with %s", SECRET)  # in the arguments
    log.info(f"password={SECRET}")  # in the message itself
    log.warning("failed: %r", {"password": SECRET})  # inside a repr
    try:
        fail(ConnectionError(f"cannot connect to https://user:{SECRET}@wincc:443/"))
    except ConnectionError:
        log.exception("request failed")  # only in the exception text
    url_error = OSError(f"rejected https://user:{quote(SECRET, safe='')}@wincc/")
    log.warning("as a URL: %s", url_error)  # percent-encoded, as a URL carries it

    output = capsys.readouterr().err
    assert SECRET not in output
    assert quote(SECRET, safe="") not in output
    assert output.count(MASK) >= 5
    assert "cannot connect to https://user:" in output  # the rest of the text stays


def test_no_secrets_no_masking(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("info", "text", [])
    logging.getLogger("gateway.test").info("nothing to hide")
    assert "nothing to hide" in capsys.readouterr().err


def test_setup_replaces_handlers_instead_of_doubling_lines(
    capsys: pytest.CaptureFixture[str],
) -> None:
    setup_logging("info", "text")
    setup_logging("info", "json")
    logging.getLogger("gateway.test").info("once")

    (line,) = lines_of(capsys)
    assert orjson.loads(line)["msg"] == "once"
