"""Log setup: readable lines for people, JSON lines for collectors, secrets masked in both."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

import orjson

from gateway.core.timestamps import format_ts

MASK = "**********"


class SecretMask(logging.Filter):
    """Replaces any configured secret that reaches a log record, whatever the code path.

    Code never logs secrets on purpose; this catches the accident (an exception text
    quoting a URL with credentials, a library's debug line).
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        # A URL in an exception text carries the secret percent-encoded.
        variants = {
            variant
            for s in secrets
            if len(s) >= 3
            for variant in (s, quote(s, safe=""), quote_plus(s, safe=""))
        }
        self._secrets = sorted(variants, key=len, reverse=True)

    def _mask(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        """Mask secrets in the message, its arguments and its exception; never drops a record."""
        if self._secrets:
            message = record.getMessage()
            masked = self._mask(message)
            if masked != message:
                record.msg, record.args = masked, None
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            if record.exc_text:
                record.exc_text = self._mask(record.exc_text)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, and the exception if any."""

    def format(self, record: logging.LogRecord) -> str:
        """Serialize the record."""
        body = {
            "ts": format_ts(int(record.created * 1000)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            body["exc"] = record.exc_text or self.formatException(record.exc_info)
        return orjson.dumps(body).decode()


class TextFormatter(logging.Formatter):
    """``2026-11-24T10:00:00.123Z INFO  gateway.mqtt: connected to ...``."""

    def format(self, record: logging.LogRecord) -> str:
        """Render the record as one readable line (plus a traceback when there is one)."""
        line = (
            f"{format_ts(int(record.created * 1000))} {record.levelname:<7} "
            f"{record.name}: {record.getMessage()}"
        )
        if record.exc_info:
            line += "\n" + (record.exc_text or self.formatException(record.exc_info))
        return line


def setup_logging(level: str, fmt: str, secrets: Iterable[str] = ()) -> None:
    """Route every logger to stderr in ``fmt`` ("text" or "json") at ``level``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(SecretMask(secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # aiohttp's access log and paho's packet log say nothing an operator needs at info.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("mqtt").setLevel(max(logging.WARNING, root.level))
