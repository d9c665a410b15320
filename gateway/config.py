"""The gateway's settings: one validated object, loaded from TOML then the environment.

Every field carries a description; ``config/gateway.example.toml`` is rendered from them
(``gateway.config_example``), so the documentation cannot drift from the code. The
``[wincc]`` models, one per dialect, live in ``gateway.wincc.settings``; ``[mqtt]`` and the
output formats' sections in ``gateway.mqtt_settings``.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from gateway.cloud_settings import AzureSettings, apply_preset
from gateway.core.commands import Range
from gateway.core.topics import is_topic_text
from gateway.errors import ConfigError
from gateway.mqtt_settings import DatabusSettings, MqttSettings, SparkplugSettings
from gateway.redundancy_settings import RedundancySettings
from gateway.section import Section, read_secret_file
from gateway.units import ByteSize, Duration
from gateway.wincc.settings import (
    UNIFIED_GOOD_CODES,
    ClassicSettings,
    RestSettings,
    UnifiedSettings,
    WinCCSettings,
    dialect_problem,
)

ENV_PREFIX = "GATEWAY_"
ENV_DELIMITER = "__"


class PollGroup(Section):
    """[[poll]]: one scan class, polled on its own interval."""

    name: str = Field(
        ..., min_length=1, description="Name of the scan class, used in logs and metrics."
    )
    interval: Duration = Field(
        1.0,
        gt=0,
        description="Time between two polls of the group. With one message per tag, the chunks "
        "(wincc.batch_size tags each) of a larger group start spread over the first half "
        "of the interval, and each is published as soon as it is read.",
    )
    tags: list[str] = Field(
        ...,
        min_length=1,
        description="Tag names or globs (* ? [..] within a level, ** across levels), "
        "resolved by browsing the server at start.",
    )
    deadband: float = Field(
        0.0,
        ge=0,
        description="Absolute deadband for numeric tags: publish only when "
        "|new - last published| > deadband. 0 publishes every change.",
    )


class AlarmSettings(Section):
    """[alarms]: polling of active alarms."""

    enabled: bool = Field(True, description="Poll active alarms and publish them.")
    interval: Duration = Field(1.0, gt=0, description="Time between two alarm polls.")


class QualitySettings(Section):
    """[quality]: what to do with samples whose quality code is not good."""

    policy: Literal["flag", "drop"] = Field(
        "flag",
        description='"flag": publish not-good samples with good = false and a quality_text; '
        '"drop": do not publish them.',
    )
    good_codes: list[int] = Field(
        [128],
        min_length=1,
        description="Quality codes that count as good (0-255). Not set with dialect = "
        '"unified": every code whose main quality is good (128-255), since runtimes report '
        "both good qualities (GOOD_CASCADE, 192, is common).",
    )

    @field_validator("good_codes")
    @classmethod
    def _codes_are_bytes(cls, codes: list[int]) -> list[int]:
        bad = [code for code in codes if not 0 <= code <= 255]
        if bad:
            raise ValueError(f"quality codes are bytes (0-255), not {bad}")
        return codes


class ValueRange(Section):
    """Allowed values of the numeric tags a glob matches."""

    tags: str = Field(..., min_length=1, description="Glob of the tags this range applies to.")
    min: float | None = Field(None, description="Smallest value a command may write.")
    max: float | None = Field(None, description="Largest value a command may write.")

    @model_validator(mode="after")
    def _bounds_in_order(self) -> Self:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min is larger than max")
        return self


class CommandSettings(Section):
    """[commands]: tag writes and alarm acknowledgements from MQTT."""

    writable: list[str] = Field(
        [],
        description="Globs of tags that MQTT commands may write, matched like [[poll]] tags "
        "(* within a level, ** across levels); a pattern that matches no tag allows nothing. "
        "Empty: no writes at all.",
        examples=[["System1.*.*.Setpoint"]],
    )
    acknowledge: list[str] = Field(
        [],
        description="Globs of alarm ids that MQTT commands may acknowledge (same matcher). "
        'Empty: no acknowledgements at all; ["**"] allows every alarm.',
        examples=[["**"]],
    )
    max_age: Duration = Field(
        30.0,
        gt=0,
        description="Commands whose ts is older than this when their request would go out are "
        "refused, never executed late.",
    )
    max_wait: Duration = Field(
        2.0,
        gt=0,
        description="Longest a command may wait at the gateway for its turn (a slow WinCC, "
        "earlier commands for the same tag); counted from arrival, then it is refused.",
    )
    rate_limit: float = Field(
        5.0,
        gt=0,
        description="Commands per second on average, counted as they arrive; faster ones are "
        "refused.",
    )
    burst: int = Field(10, ge=1, description="Commands accepted at once before the rate applies.")
    ranges: list[ValueRange] = Field(
        [],
        description="Optional value ranges for numeric tags, checked before a write.",
        examples=[[{"tags": "System1.*.*.Setpoint", "min": 0.0, "max": 100.0}]],
    )

    def rules(self) -> dict[str, Any]:
        """These settings as the command policy takes them (at start and on reload)."""
        return {
            "writable": self.writable,
            "acknowledge": self.acknowledge,
            "ranges": [Range(r.tags, r.min, r.max) for r in self.ranges],
            "max_age": self.max_age,
            "max_wait": self.max_wait,
            "rate": self.rate_limit,
            "burst": self.burst,
        }


class BufferSettings(Section):
    """[buffer]: where messages wait, on disk, until the broker has acknowledged them."""

    path: Path = Field(
        Path("/var/lib/wincc-gateway/buffer.db"),
        description="Store-and-forward database (SQLite). Survives restarts and crashes.",
    )
    max_size: ByteSize = Field(1_000_000_000, gt=0, description="Largest size of the buffer.")
    policy: Literal["drop_oldest", "drop_newest"] = Field(
        "drop_oldest",
        description='When full: "drop_oldest" makes room for new messages, "drop_newest" '
        "keeps the backlog. Drops are counted and logged once per episode.",
    )
    sync: Literal["normal", "full"] = Field(
        "normal",
        description='"normal" survives crashes of the gateway; "full" also survives power '
        "loss, at the cost of a disk flush per write.",
    )


class BackfillSettings(Section):
    """[backfill]: after failed polls or a restart, fill the gap from the WinCC archive."""

    enabled: bool = Field(
        True,
        description="Query the archive for the samples missed. Gaps left unfilled are "
        "logged with their range and counted in wincc_gateway_gaps_unfilled_total and "
        "wincc_gateway_gap_unfilled_seconds_total.",
    )
    max_gap: Duration = Field(
        3600.0,
        gt=0,
        description="Longer gaps backfill only their most recent max_gap; the older part "
        "is logged and counted as unfilled.",
    )
    concurrency: int = Field(4, ge=1, le=64, description="History requests in flight at once.")


class HealthSettings(Section):
    """[health]: the HTTP endpoint for health checks, metrics and the status page."""

    enabled: bool = Field(
        True, description="Serve GET /health, GET /metrics and the status page at /."
    )
    listen: str = Field(
        "127.0.0.1:9100",
        description="host:port to listen on. The status page is read-only whatever the "
        "address; on an address others reach, set token.",
    )
    token: SecretStr | None = Field(
        None,
        description="When set, the status page (/ and /events) requires it, as "
        "'Authorization: Bearer <token>' or once as /?token=<token>, which sets a cookie. "
        "/health and /metrics never do. Prefer token_file.",
        examples=["change-me"],
    )
    token_file: Path | None = Field(
        None,
        description="File holding the status page token (Docker/systemd secret).",
        examples=["/run/secrets/status_token"],
    )

    @field_validator("listen")
    @classmethod
    def _listen_is_host_port(cls, listen: str) -> str:
        host, sep, port = listen.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"{listen!r} is not host:port like 127.0.0.1:9100")
        return listen

    @model_validator(mode="after")
    def _read_token_file(self) -> Self:
        if self.token is not None and self.token_file is not None:
            raise ValueError("token and token_file are both set; keep one")
        if self.token_file is not None:
            self.token = read_secret_file(self.token_file, "token_file")
        if self.token is not None and not self.token.get_secret_value():
            raise ValueError("token is empty; remove it, or give it a value")
        return self


class LogSettings(Section):
    """[log]: what the gateway writes to its log."""

    level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Least severe level written."
    )
    format: Literal["text", "json"] = Field(
        "text", description='"text" for people, "json" for log collectors (one object a line).'
    )


class GatewaySettings(BaseSettings):
    """The whole configuration of one gateway."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_DELIMITER,
        extra="forbid",
        validate_default=True,
    )

    wincc: WinCCSettings = Field(default_factory=RestSettings)
    poll: list[PollGroup] = Field(
        default_factory=list, description="Scan classes ([[poll]] tables)."
    )
    alarms: AlarmSettings = Field(default_factory=AlarmSettings)
    quality: QualitySettings = Field(default_factory=QualitySettings)
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    commands: CommandSettings = Field(default_factory=CommandSettings)
    buffer: BufferSettings = Field(default_factory=BufferSettings)
    backfill: BackfillSettings = Field(default_factory=BackfillSettings)
    health: HealthSettings = Field(default_factory=HealthSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    sparkplug: SparkplugSettings = Field(default_factory=SparkplugSettings)
    databus: DatabusSettings = Field(default_factory=DatabusSettings)
    azure: AzureSettings = Field(default_factory=AzureSettings)
    redundancy: RedundancySettings = Field(default_factory=RedundancySettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """The environment overrides the file; the file's contents arrive as init values."""
        return (env_settings, init_settings)

    @model_validator(mode="after")
    def _pair_continues_from_retained(self) -> Self:
        if self.redundancy.role == "auto" and (
            self.mqtt.payload != "per-tag" or not self.mqtt.retain
        ):
            # The standby learns every tag's seq from the retained per-tag messages.
            raise ValueError(
                'redundancy.role = "auto" needs mqtt.payload = "per-tag" and mqtt.retain = true'
            )
        return self

    @model_validator(mode="after")
    def _groups_are_unique(self) -> Self:
        names = [group.name for group in self.poll]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"poll: group names must be unique, repeated: {duplicates}")
        return self

    @model_validator(mode="after")
    def _unified_counts_both_good_qualities(self) -> Self:
        if isinstance(self.wincc, UnifiedSettings) and "good_codes" not in (
            self.quality.model_fields_set
        ):
            self.quality.good_codes = list(UNIFIED_GOOD_CODES)
        return self

    @model_validator(mode="after")
    def _preset_rules(self) -> Self:
        apply_preset(self.mqtt, self.azure, {"sparkplug", "databus"})
        return self

    @model_validator(mode="after")
    def _sparkplug_is_named(self) -> Self:
        if self.mqtt.payload != "sparkplug":
            return self
        missing = [k for k in ("group_id", "edge_node_id") if getattr(self.sparkplug, k) is None]
        if missing:
            raise ValueError(
                f"sparkplug.{' and sparkplug.'.join(missing)}: required with "
                'mqtt.payload = "sparkplug"'
            )
        if self.sparkplug.device == "group":
            bad = [g.name for g in self.poll if not is_topic_text(g.name) or "/" in g.name]
            if bad:
                raise ValueError(
                    f'sparkplug.device = "group": poll group names are device ids, and '
                    f"cannot hold + / # or controls: {bad}"
                )
        return self

    @model_validator(mode="after")
    def _databus_is_named(self) -> Self:
        if self.mqtt.payload != "databus":
            return self
        if self.databus.app_instance is None:
            raise ValueError('databus.app_instance: required with mqtt.payload = "databus"')
        bad = [g.name for g in self.poll if not is_topic_text(g.name) or "/" in g.name]
        if bad:
            raise ValueError(
                "mqtt.payload = databus: poll group names are collection names in topics, "
                f"and cannot hold + / # or controls: {bad}"
            )
        return self

    @model_validator(mode="after")
    def _classic_alarms_have_a_filter(self) -> Self:
        # WinCC projects name their REST filters freely, so there is no default to guess.
        if not isinstance(self.wincc, ClassicSettings) or not self.alarms.enabled:
            return self
        if not self.wincc.alarm_filter:
            raise ValueError(
                'wincc.alarm_filter: required with dialect = "classic" while alarms.enabled '
                "= true: the name of a REST filter configured in WinCC Alarm Logging"
            )
        return self


def _key_path(loc: tuple[int | str, ...]) -> str:
    """``("poll", 0, "interval")`` -> ``poll[0].interval``."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def _problems(error: ValidationError) -> list[str]:
    """One line per problem, naming the key, never echoing the offending input."""
    lines = []
    for item in error.errors(include_input=False, include_url=False):
        loc = tuple(part for part in item["loc"] if not str(part).startswith("function-"))
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        if loc[:1] == ("wincc",):
            inner, message = dialect_problem(loc[1:], item["type"], message)
            loc = ("wincc", *inner)
        key = _key_path(loc)
        # A rule across sections (a preset) names each key itself, one problem a line.
        lines += [f"{key}: {message}"] if key else message.splitlines()
    return lines


def load_settings(path: Path | None) -> GatewaySettings:
    """Load and validate the configuration; raise ``ConfigError`` listing every problem."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            with path.open("rb") as handle:
                data = tomllib.load(handle)
        except OSError as exc:
            raise ConfigError([f"{path}: cannot read the config file: {exc.strerror}"]) from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError([f"{path}: not valid TOML: {exc}"]) from exc
    try:
        return GatewaySettings(**data)
    except ValidationError as exc:
        raise ConfigError(_problems(exc)) from exc


def redacted(settings: GatewaySettings) -> dict[str, Any]:
    """The effective configuration as plain data, every secret replaced by ``"**********"``."""
    return settings.model_dump(mode="json")
