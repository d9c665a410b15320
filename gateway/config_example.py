"""Renders ``config/gateway.example.toml`` from the settings models' field descriptions.

The example file is generated, and a test compares it with this output, so every key the
code accepts is documented and no documented key is stale.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel

from gateway.config import ENV_DELIMITER, ENV_PREFIX, GatewaySettings, PollGroup
from gateway.wincc.settings import DIALECTS, WinCCBase

HEADER = f"""\
# wincc-gateway configuration. Every key is listed with its default; uncomment to change.
# Any key can be overridden by an environment variable {ENV_PREFIX}<SECTION>{ENV_DELIMITER}<KEY>,
# e.g. {ENV_PREFIX}MQTT{ENV_DELIMITER}URL=mqtts://broker.example:8883.
# Durations are written like "500ms", "1s", "5m"; sizes like "512MB", "1GB".
# Secrets: prefer the *_file keys (Docker/systemd secrets) over inline passwords.
# Check a file with: wincc-gateway check-config --config FILE
"""

EXAMPLE_POLL = [
    PollGroup(
        name="fast",
        interval=1.0,
        tags=["System1.Area1.Tank*.Level", "System1.Area1.Pump1.Speed"],
        deadband=0.5,
    ),
    PollGroup(name="slow", interval=10.0, tags=["System1.Area2.**"], deadband=0.0),
]


def _toml_value(value: Any) -> str:
    """TOML literal of a JSON-like value (strings, numbers, booleans, lists of those)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{key} = {_toml_value(item)}" for key, item in value.items())
        return "{ " + items + " }"
    return orjson.dumps(value).decode()


def _render_fields(model: type[BaseModel], values: dict[str, Any], commented: bool) -> list[str]:
    lines = []
    for name, value in values.items():
        field = model.model_fields[name]
        lines.append(f"# {field.description}")
        if (value is None or value == []) and field.examples:
            lines.append(f"# {name} = {_toml_value(field.examples[0])}  # not set by default")
        elif value is None:
            lines.append(f"# {name} =   # not set by default")
        else:
            prefix = "# " if commented else ""
            lines.append(f"{prefix}{name} = {_toml_value(value)}")
    return lines


def _render_wincc() -> list[str]:
    """The keys every dialect shares, then each dialect's own keys under its name."""
    lines = [f"# {(WinCCBase.__doc__ or '').strip()}", "[wincc]"]
    common = WinCCBase.model_construct().model_dump(mode="json")
    lines.extend(_render_fields(WinCCBase, common, commented=True))
    for dialect, model in DIALECTS.items():
        values = model.model_construct().model_dump(mode="json")
        own = {name: values[name] for name in model.model_fields if name not in common}
        if own:
            lines.append(f'# Only with dialect = "{dialect}":')
            lines.extend(_render_fields(model, own, commented=True))
    return lines


def render_example() -> str:
    """The full example configuration, as committed in ``config/gateway.example.toml``."""
    defaults = GatewaySettings.model_construct()
    out = [HEADER]
    for section, field in GatewaySettings.model_fields.items():
        if section == "wincc":
            out.extend([*_render_wincc(), ""])
            continue
        if section == "poll":
            for group in EXAMPLE_POLL:
                out.append(f"# {field.description} Several may be given.")
                out.append("[[poll]]")
                out.extend(
                    _render_fields(PollGroup, group.model_dump(mode="json"), commented=False)
                )
                out.append("")
            continue
        section_model = type(getattr(defaults, section))
        out.append(f"# {(section_model.__doc__ or '').strip()}")
        out.append(f"[{section}]")
        values = getattr(defaults, section).model_dump(mode="json")
        out.extend(_render_fields(section_model, values, commented=True))
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"
