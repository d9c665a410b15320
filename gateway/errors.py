"""The gateway's exception family.

Each boundary (config, WinCC client, MQTT session, command path) translates the errors of
the library beneath it into one of these exactly once, so callers handle a small, typed
set and operators read one clear message.
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


class ConfigError(GatewayError):
    """The configuration is invalid; ``problems`` holds one line per problem, key first."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class WinCCError(GatewayError):
    """Any failure talking to the WinCC server."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class WinCCAuthError(WinCCError):
    """Login refused, or a token still refused right after logging in again."""


class WinCCUnavailable(WinCCError):
    """The server cannot answer now (503, connection refused, timeout): retry later."""


class WinCCNoAnswer(WinCCUnavailable):
    """The request went out (or may have) and no answer came back: the connection broke or
    timed out. Whether a write took effect is unknown."""


class WinCCTimeout(WinCCNoAnswer):
    """The server did not answer within the configured timeout."""


class WinCCNotFound(WinCCError):
    """The tag or alarm does not exist on the server (404)."""


class WinCCRejected(WinCCError):
    """The server refused the request as such (400 type mismatch, 403 read-only)."""


class WinCCProtocolError(WinCCError):
    """The server answered something that does not fit the API (bad JSON, missing fields)."""


class WinCCUnsupported(WinCCError):
    """The server's interface does not offer the operation at all; retrying cannot help.

    The message is the whole answer a command gets, so it names the interface.
    """


class CommandRejected(GatewayError):
    """An inbound MQTT command was refused; the message is the answer's ``error`` text."""


class MqttUnavailable(GatewayError):
    """The broker connection is not there, or broke: what was handed over was not
    published, and can be tried again once the session has reconnected."""


def wincc_reason(exc: WinCCError, kind: str) -> str:
    """The answer's text for a command WinCC did not carry out."""
    if isinstance(exc, WinCCUnsupported):
        return str(exc)
    if isinstance(exc, WinCCNotFound):
        return f"unknown {kind} on the WinCC server"
    if isinstance(exc, WinCCRejected):
        status = "" if exc.status is None else f" ({exc.status})"
        return f"WinCC refused it{status}: {exc}"
    if isinstance(exc, WinCCUnavailable):
        return f"WinCC unavailable, not executed: {exc}"
    return f"WinCC error: {exc}"
