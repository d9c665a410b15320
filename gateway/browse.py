"""``wincc-gateway browse``: the server's tags as a snippet to paste into ``[[poll]]``."""

from __future__ import annotations

import orjson

from gateway.core.models import TagInfo
from gateway.wincc.connect import open_client
from gateway.wincc.resolve import resolve_tags
from gateway.wincc.settings import WinCCSettings


def render_snippet(prefix: str, tags: list[TagInfo]) -> str:
    """A commented TOML ``tags = [...]`` list: one tag a line with its type and access."""
    where = f"under {prefix}" if prefix else "on the server"
    if not tags:
        return f"# no tags {where}\n"
    lines = [f"# {len(tags)} tags {where}", "tags = ["]
    width = max(len(orjson.dumps(tag.name)) for tag in tags) + 1
    for tag in tags:
        quoted = orjson.dumps(tag.name).decode() + ","
        kind = tag.type.value if tag.type else "unknown type"
        access = "writable" if tag.writable else "read-only"
        lines.append(f"    {quoted:<{width}}  # {kind}, {access}")
    lines.append("]")
    return "\n".join(lines) + "\n"


async def browse_snippet(settings: WinCCSettings, prefix: str) -> str:
    """Every tag below ``prefix`` (all tags when empty), rendered by ``render_snippet``."""
    prefix = prefix.strip(".")
    pattern = f"{prefix}.**" if prefix else "**"
    async with open_client(settings) as client:
        result = await resolve_tags(client, [pattern])
    return render_snippet(prefix, result.tags)
