"""``[wincc]``: one settings model per dialect, chosen by the ``dialect`` key.

The keys every dialect shares live on ``WinCCBase``; each dialect adds its own keys on its
model, so a key of one dialect given to another is refused by name, not silently ignored.
A new dialect is a new model and one entry in ``DIALECTS`` and in ``WinCCSettings``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import Discriminator, Field, SecretStr, Tag, field_validator, model_validator

from gateway.section import Section, read_secret_file
from gateway.units import Duration

DEFAULT_DIALECT = "rest"
UNIFIED_GOOD_CODES = range(128, 256)
"""Quality codes that count as good with WinCC Unified unless configured: every code whose
main quality is good, cascade or not."""


class WinCCBase(Section):
    """[wincc]: the WinCC server to poll."""

    url: str | list[str] = Field(
        "https://127.0.0.1:8443",
        description="Base URL of the WinCC REST service. https is required; "
        'http only with allow_insecure_http = true. With dialect = "classic" a URL without '
        'a path gets /WinCCRestService (e.g. https://wincc.example:34569); with "unified" it '
        "is the GraphQL endpoint exactly as the runtime offers it (https://host/graphql/ "
        "through IIS, or https://host:4000/graphql). A list names the servers of a redundant "
        "pair: the gateway reads from the first that answers, fails over to the other when it "
        "stops answering, fills the gap from the new server's archive, and writes only to the "
        "server it reads from.",
        examples=[["https://wincc-a.example:8443", "https://wincc-b.example:8443"]],
    )
    dialect: str = Field(
        DEFAULT_DIALECT,
        description='API dialect the server speaks: "rest" (the WinCC REST API), "classic" '
        "(the WinCC REST service of WinCC V7.5 SP2 and V8, HTTP Basic auth; no alarm "
        'acknowledgement) or "unified" (WinCC Unified V17 and later, GraphQL). Each dialect '
        "accepts only its own keys besides the common ones.",
    )
    username: str = Field("", description="WinCC user the gateway logs in as.")
    password: SecretStr | None = Field(
        None,
        description="Password of that user. Prefer password_file.",
        examples=["change-me"],
    )
    password_file: Path | None = Field(
        None,
        description="File holding the password (Docker/systemd secret).",
        examples=["/run/secrets/wincc_password"],
    )
    ca_file: Path | None = Field(
        None,
        description="PEM file of the CA that signed the server's certificate.",
        examples=["/etc/wincc-gateway/wincc-ca.pem"],
    )
    verify_tls: bool = Field(
        True, description="Verify the server's certificate. Turn off only on a test bench."
    )
    allow_insecure_http: bool = Field(
        False, description="Allow a plain http:// url (credentials travel unencrypted)."
    )
    timeout: Duration = Field(5.0, gt=0, description="Time limit of one request.")
    max_concurrency: int = Field(
        8, ge=1, le=256, description="Requests in flight to the server at once."
    )
    batch_size: int = Field(1000, ge=1, le=100_000, description="Tag names per bulk read request.")

    @field_validator("url")
    @classmethod
    def _url_is_http(cls, url: str | list[str]) -> str | list[str]:
        return each_url(url, "https://wincc.example:443", lambda one: one.rstrip("/"))

    @property
    def urls(self) -> list[str]:
        """The servers in the order they are tried (one without redundancy)."""
        return [self.url] if isinstance(self.url, str) else list(self.url)

    @model_validator(mode="after")
    def _check_transport_and_secret(self) -> Self:
        if any(urlsplit(url).scheme == "http" for url in self.urls) and not (
            self.allow_insecure_http
        ):
            raise ValueError(
                "url: http:// sends the WinCC password unencrypted; use https:// "
                "or set allow_insecure_http = true"
            )
        if self.password is not None and self.password_file is not None:
            raise ValueError("password and password_file are both set; keep one")
        if self.password_file is not None:
            self.password = read_secret_file(self.password_file, "password_file")
        return self


class RestSettings(WinCCBase):
    """The WinCC REST API: the common keys only."""

    dialect: Literal["rest"] = "rest"


class ClassicSettings(WinCCBase):
    """The WinCC REST service of WinCC V7.5 SP2 and V8."""

    dialect: Literal["classic"] = "classic"
    accept_language: str | None = Field(
        None,
        description="Language of the texts WinCC returns (alarm texts), sent as "
        "Accept-Language. Not set: the server's default language.",
        examples=["en-US"],
    )
    archive: str | None = Field(
        None,
        description="Process value archive to read a tag's history from when "
        "tagLogging/Variables does not name one for it.",
        examples=["ProcessValueArchive"],
    )
    alarm_filter: str | None = Field(
        None,
        min_length=1,
        description="Name of the REST filter configured in WinCC Alarm Logging "
        "whose message list is the set of active alarms (alarmLogging/MessageList/<filter>). "
        "Required while alarms are enabled.",
        examples=["GatewayAlarms"],
    )


class UnifiedSettings(WinCCBase):
    """WinCC Unified (V17 and later) over its GraphQL interface."""

    dialect: Literal["unified"] = "unified"
    mode: Literal["subscribe", "poll"] = Field(
        "subscribe",
        description='"subscribe": WinCC pushes every change as it happens (the [[poll]] '
        'intervals only pace the link checks); "poll": the groups are read on their '
        "intervals like the other dialects.",
    )
    subscribe_chunk: int = Field(
        1000,
        ge=1,
        le=100_000,
        description="Tag names per subscription; a group with more tags is subscribed in several.",
    )
    logging_tag: str = Field(
        "{tag}:Log",
        min_length=1,
        description="Name of the logging tag that holds a tag's history, {tag} standing "
        "for the tag's name; backfill reads it after an outage.",
    )

    @field_validator("url")
    @classmethod
    def _url_is_http(cls, url: str | list[str]) -> str | list[str]:
        # The GraphQL URL is taken exactly as configured: /graphql and /graphql/ differ.
        return each_url(url, "https://wincc.example/graphql/", lambda one: one)

    @model_validator(mode="after")
    def _pair_is_polled(self) -> Self:
        if len(self.urls) > 1 and self.mode == "subscribe":
            # A subscription follows one server; a redundant pair is read poll by poll.
            raise ValueError('a redundant pair of Unified servers needs mode = "poll"')
        return self

    @field_validator("logging_tag")
    @classmethod
    def _logging_tag_names_the_tag(cls, template: str) -> str:
        if "{tag}" not in template:
            raise ValueError("the logging tag name needs {tag} where the tag's name goes")
        return template


def each_url(url: str | list[str], example: str, normal: Callable[[str], str]) -> str | list[str]:
    """Check one server URL or each of a redundant pair's, and put each in its normal form."""
    urls = [url] if isinstance(url, str) else url
    if not urls:
        raise ValueError("give at least one server URL")
    for one in urls:
        parts = urlsplit(one)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError(f"{one!r} is not an http(s) URL like {example}")
    return normal(url) if isinstance(url, str) else [normal(one) for one in url]


DIALECTS: dict[str, type[WinCCBase]] = {
    "rest": RestSettings,
    "classic": ClassicSettings,
    "unified": UnifiedSettings,
}
"""``dialect`` value -> its settings model, in the order the documentation lists them."""

DIALECT_ERROR = "wincc_dialect"
"""Error type of a ``dialect`` that names no model; ``dialect_problem`` places it on the key."""


def _dialect_tag(data: Any) -> str | None:
    """The union member for ``data``: its ``dialect``, the default when the key is absent."""
    if isinstance(data, WinCCBase):
        return data.dialect
    dialect = data.get("dialect", DEFAULT_DIALECT) if isinstance(data, dict) else None
    return dialect if isinstance(dialect, str) else None


WinCCSettings = Annotated[
    Annotated[RestSettings, Tag("rest")]
    | Annotated[ClassicSettings, Tag("classic")]
    | Annotated[UnifiedSettings, Tag("unified")],
    Discriminator(
        _dialect_tag,
        custom_error_type=DIALECT_ERROR,
        custom_error_message="Input should be "
        + ", ".join(f"'{name}'" for name in list(DIALECTS)[:-1])
        + f" or '{list(DIALECTS)[-1]}'",
    ),
]
"""The settings of any dialect; ``dialect`` picks the model, "rest" when it is absent."""


def dialect_problem(
    loc: tuple[int | str, ...], kind: str, message: str
) -> tuple[tuple[int | str, ...], str]:
    """A validation problem inside ``[wincc]`` as the user wrote it.

    ``loc`` is relative to the section. The dialect tag pydantic puts first is no key of
    the file, so it is dropped; a key that belongs to another dialect says so.
    """
    if kind == DIALECT_ERROR:
        return ("dialect",), message
    if not loc or loc[0] not in DIALECTS:
        return loc, message
    dialect, loc = str(loc[0]), loc[1:]
    if kind == "extra_forbidden" and len(loc) == 1:
        owners = [name for name, model in DIALECTS.items() if loc[0] in model.model_fields]
        if owners:
            message = f'not a key of the "{dialect}" dialect (it belongs to: {", ".join(owners)})'
    return loc, message
