"""The reference script: WinCC ``rest`` to MQTT the competent way, without durability.

``python -m bench.script --url URL --broker mqtt://HOST:PORT --prefix P [--report FILE]``

What a capable engineer writes in an afternoon, and what the gateway's cost is measured
against: bulk reads of every tag each second (1,000 names a request), change detection
(value or quality changed), and aiomqtt at QoS 1, 100 publishes gathered at a time. No
buffer, no reconnect, no backfill: a broker or WinCC outage loses samples. It publishes
what the gateway publishes (``P/tags/<tag path>``, ``{"value", "quality", "good", "ts",
"seq"}`` with a seq per tag from 1, retained), so the bench's subscriber measures both
alike. On SIGTERM it finishes the publishes in flight and writes ``--report``: each tag's
last seq, from which the bench counts seq gaps.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import aiomqtt
import orjson

READ_CHUNK = 1000
"""Names per ``POST /api/dp/read``."""

PUBLISH_WINDOW = 100
"""Publishes awaited together: enough in flight to hide the broker's round trip."""


def good(quality: int) -> bool:
    """WinCC quality codes from 0x80 up are good; below are bad (0x00-0x3F) or uncertain."""
    return quality >= 0x80


def topic_path(name: str) -> str:
    """``System1.Area1.Pump1.Speed`` -> ``System1/Area1/Pump1/Speed``: the gateway's topic
    path for names without MQTT wildcards or slashes, which is all the simulator has."""
    return name.replace(".", "/")


class Wincc:
    """A logged-in session on the ``rest`` API; logs in again when the token expires."""

    def __init__(self, http: aiohttp.ClientSession, user: str, password: str) -> None:
        self._http = http
        self._login = {"username": user, "password": password}
        self._headers: dict[str, str] = {}

    async def login(self) -> None:
        """Take a bearer token."""
        async with self._http.post("/api/auth/login", json=self._login) as response:
            response.raise_for_status()
            token = (await response.json())["token"]
        self._headers = {"Authorization": f"Bearer {token}"}

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        for attempt in (1, 2):
            async with self._http.request(
                method, path, headers=self._headers, **kwargs
            ) as response:
                if response.status == 401 and attempt == 1:
                    await self.login()
                    continue
                response.raise_for_status()
                return orjson.loads(await response.read())
        raise AssertionError("unreachable")

    async def browse(self, path: str = "") -> list[str]:
        """Every tag under ``path`` in browse order; sibling folders are walked at once."""
        answer = await self._call("GET", "/api/dp/browse", params={"path": path})
        children = answer["children"]
        below = await asyncio.gather(
            *(self.browse(child["name"]) for child in children if child["has_children"])
        )
        folders = iter(below)
        names: list[str] = []
        for child in children:
            if child["has_children"]:
                names += next(folders)
            else:
                names.append(child["name"])
        return names

    async def read(self, names: list[str]) -> list[dict[str, Any]]:
        """The current readings of ``names`` in one request."""
        answer = await self._call("POST", "/api/dp/read", data=orjson.dumps({"names": names}))
        values: list[dict[str, Any]] = answer["values"]
        return values


async def poll_loop(
    wincc: Wincc, mqtt: aiomqtt.Client, prefix: str, interval: float, stop: asyncio.Event
) -> dict[str, int]:
    """Read all, publish what changed, sleep to the next second; returns the last seqs."""
    names = await wincc.browse()
    chunks = [names[i : i + READ_CHUNK] for i in range(0, len(names), READ_CHUNK)]
    topics = {name: f"{prefix}/tags/{topic_path(name)}" for name in names}
    last: dict[str, tuple[Any, int]] = {}
    seqs: dict[str, int] = dict.fromkeys(names, 0)
    loop = asyncio.get_running_loop()
    next_poll = loop.time()
    while not stop.is_set():
        answers = await asyncio.gather(*(wincc.read(chunk) for chunk in chunks))
        publishes = []
        for item in (item for answer in answers for item in answer):
            name = item["name"]
            if "error" in item:
                continue
            state = (item["value"], item["quality"])
            if last.get(name) == state:
                continue
            last[name] = state
            seq = seqs[name] = seqs[name] + 1
            payload = {
                "value": item["value"],
                "quality": item["quality"],
                "good": good(item["quality"]),
                "ts": item["timestamp"],
                "seq": seq,
            }
            publishes.append((topics[name], orjson.dumps(payload)))
        for start in range(0, len(publishes), PUBLISH_WINDOW):
            window = publishes[start : start + PUBLISH_WINDOW]
            await asyncio.gather(
                *(mqtt.publish(topic, body, qos=1, retain=True) for topic, body in window)
            )
        next_poll = max(next_poll + interval, loop.time())
        with contextlib.suppress(TimeoutError):  # the stop came, or it is time to poll
            await asyncio.wait_for(stop.wait(), next_poll - loop.time())
    return {topic_path(name): seq for name, seq in seqs.items() if seq}


async def run(args: argparse.Namespace) -> None:
    """Connect to both sides, poll until SIGTERM or SIGINT, write the report."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    broker = urlsplit(args.broker)
    async with (
        aiohttp.ClientSession(args.url) as http,
        aiomqtt.Client(
            broker.hostname or "127.0.0.1",
            broker.port or 1883,
            identifier=args.client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            max_inflight_messages=PUBLISH_WINDOW,  # paho's default of 20 would halve the window
        ) as mqtt,
    ):
        mqtt.pending_calls_threshold = 2 * PUBLISH_WINDOW + 10  # a full window is no warning
        wincc = Wincc(http, args.username, args.password)
        await wincc.login()
        seqs = await poll_loop(wincc, mqtt, args.prefix, args.interval, stop)
    if args.report is not None:
        args.report.write_bytes(orjson.dumps({"seqs": seqs}))


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the flags and run; 0 after a clean stop."""
    parser = argparse.ArgumentParser(prog="python -m bench.script", description=__doc__)
    parser.add_argument("--url", required=True, help="the rest API, http://HOST:PORT")
    parser.add_argument("--broker", required=True, help="mqtt://HOST:PORT")
    parser.add_argument("--prefix", required=True, help="topic prefix, as the gateway's")
    parser.add_argument("--client-id", default="bench-script", help="MQTT client id")
    parser.add_argument("--username", default="demo")
    parser.add_argument("--password", default="demo")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between polls")
    parser.add_argument("--report", type=Path, help="JSON file of the last seq of each tag")
    asyncio.run(run(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
