"""The faults the simulator injects, switchable at run time through ``/_sim/faults``.

A pydantic model rather than a dataclass because it is API input: one definition gives
strict type checks, ranges and unknown-key errors for both the flags and the HTTP body.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class FaultsError(ValueError):
    """A fault update was refused; the message names every offending key."""


class Faults(BaseModel):
    """Current fault settings; every field is checked on assignment too."""

    model_config = ConfigDict(extra="forbid", strict=True, validate_assignment=True)

    down: bool = Field(
        default=False, description="answer every /api/ request with 503; the plant runs on"
    )
    latency_ms: int = Field(
        default=0, ge=0, le=600_000, description="delay before every /api/ response, ms"
    )
    error_rate: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        allow_inf_nan=False,
        description="share of /api/ requests answered with HTTP 500 or 503",
    )
    drop_rate: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        allow_inf_nan=False,
        description="share of /api/ requests whose connection is closed without an answer",
    )
    token_ttl: float = Field(
        default=3600.0,
        gt=0.0,
        allow_inf_nan=False,
        description="seconds a token stays valid after login; applies to existing tokens",
    )
    bad_quality: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        allow_inf_nan=False,
        description="share of value changes that carry a bad or uncertain quality code",
    )
    change_rate: float = Field(
        default=0.1,
        ge=0.0,
        le=10.0,
        allow_inf_nan=False,
        description="value changes per tag and second, on average (0 freezes the plant)",
    )

    clock_offset: float = Field(
        default=0.0,
        ge=-31_622_400.0,
        le=31_622_400.0,
        allow_inf_nan=False,
        description="seconds the simulated WinCC clock runs ahead of the host's (negative: "
        "behind); every timestamp served, recorded or parsed is on that clock",
    )
    html_login: bool = Field(
        default=False,
        description="answer every /api/ request with 200 and an HTML login page, as a "
        "proxy in front of WinCC does once its own session ended",
    )
    unauthorized: bool = Field(
        default=False, description="answer every /api/ request, the login too, with 401"
    )
    redu_state: Literal["ACTIVE", "PASSIVE"] = Field(
        default="ACTIVE",
        description="the redundancy state WinCC Unified reports in its reduState "
        "subscription; the servers of a redundant pair report one of each",
    )

    def apply(self, changes: Mapping[str, object]) -> None:
        """Validate a partial update as a whole, then apply it; nothing changes on error."""
        try:
            updated = Faults.model_validate({**self.model_dump(), **changes})
        except ValidationError as exc:
            raise FaultsError(describe(exc)) from exc
        for key in changes:
            setattr(self, key, getattr(updated, key))


def describe(exc: ValidationError) -> str:
    """One ``key: problem`` per error, joined, for the API's ``error`` text."""
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or 'body'}: {error['msg']}"
        for error in exc.errors()
    )
