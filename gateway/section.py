"""What every config section shares: strictness about keys, and reading secret files.

Its own module so that the WinCC settings (``gateway.wincc_settings``) and the rest of the
configuration (``gateway.config``) build on it without importing each other.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, SecretStr


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, not warnings."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


def read_secret_file(path: Path | None, key: str) -> SecretStr | None:
    """Read a Docker/systemd secret file; the trailing newline editors add is dropped."""
    if path is None:
        return None
    try:
        return SecretStr(path.read_text(encoding="utf-8").rstrip("\r\n"))
    except OSError as exc:
        raise ValueError(f"{key}: cannot read {path}: {exc.strerror}") from exc
