"""``wincc-gateway simulate``: the argument parsing and the run loop, nothing more.

Flag values are checked by argparse types, so a bad value stops with exit code 2 and a
message naming the flag before anything starts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import signal
import ssl
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from gateway.simulator.classic import ALARM_FILTER, ARCHIVE, BASE_PATH
from gateway.simulator.faults import Faults
from gateway.simulator.plant import alarm_capacity
from gateway.simulator.server import Simulator, SimulatorOptions
from gateway.simulator.tls import load_server_context, make_server_context

_DEFAULTS = SimulatorOptions()
_FAULTS = Faults.model_fields

EPILOG = f"""\
Faults at run time (no login needed; never faulted themselves):

  GET  /_sim/faults   the current settings
  POST /_sim/faults   a partial JSON object; applied as a whole or not at all (400 on
                      unknown keys, wrong types or out-of-range values); answers the
                      full current settings

  keys:
    down          bool   {_FAULTS["down"].description}
    latency_ms    int    {_FAULTS["latency_ms"].description}
    error_rate    float  {_FAULTS["error_rate"].description}
    drop_rate     float  {_FAULTS["drop_rate"].description}
    token_ttl     float  {_FAULTS["token_ttl"].description}
    bad_quality   float  {_FAULTS["bad_quality"].description}
    change_rate   float  {_FAULTS["change_rate"].description}
    clock_offset  float  {_FAULTS["clock_offset"].description}
    html_login    bool   {_FAULTS["html_login"].description}
    unauthorized  bool   {_FAULTS["unauthorized"].description}
    redu_state    str    {_FAULTS["redu_state"].description}

  curl -X POST http://127.0.0.1:8443/_sim/faults -d '{{"down": true}}'
  curl -X POST http://127.0.0.1:8443/_sim/faults -d '{{"latency_ms": 800, "error_rate": 0.1}}'
  curl -X POST http://127.0.0.1:8443/_sim/faults -d '{{"token_ttl": 5}}'   # expires tokens
  curl -X POST http://127.0.0.1:8443/_sim/faults -d '{{"clock_offset": 3600}}'   # WinCC 1 h ahead

  GET  /_sim/stats    {{"tags", "changes", "changes_good", "alarm_transitions", "reads",
                      "read_items", "writes", "acks", "uptime_s"}} since start

The API itself is under /api/ (see SPEC.md): log in with POST /api/auth/login and send
"Authorization: Bearer <token>" on every other request.

With --dialect classic it is the WinCC REST service of WinCC V7.5 SP2/V8 instead, under
{BASE_PATH}/ (path case ignored) with HTTP Basic auth on every request: tagManagement/
Values, Value/<name>, variables; tagLogging/Values, Variables (archive {ARCHIVE!r});
alarmLogging/MessageList/{ALARM_FILTER} (the one REST filter defined). The faults apply
alike, token_ttl aside: Basic auth has no tokens.

With --dialect unified it is a WinCC Unified runtime's GraphQL interface instead, on
--graphql-path: POST {{"query", "variables"}} as application/json (mutation login for a
token, then "Authorization: Bearer <token>"), and subscriptions over a WebSocket on the same
path (subprotocol graphql-transport-ws). Sessions end after --auto-logoff seconds without a
request (mutation extendSession keeps one alive). The faults apply to the endpoint and the
WebSocket upgrade, token_ttl aside; "down" also cuts the open WebSockets. Two more controls:

  POST /_sim/expire-sessions   ends every session (as a runtime restart does) and closes
                               their WebSockets with 4401
  POST /_sim/drop-websockets   cuts every WebSocket without a closing handshake
"""


def _number(
    kind: Callable[[str], float], low: float, high: float, *, open_low: bool = False
) -> Callable[[str], float]:
    """An argparse type accepting ``kind`` values in [low, high] (or (low, high])."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        too_low = value <= low if open_low else value < low
        if not math.isfinite(value) or too_low or value > high:
            bracket = "(" if open_low else "["
            raise argparse.ArgumentTypeError(f"{text} is outside {bracket}{low:g}, {high:g}]")
        return value

    return parse


def _path(text: str) -> str:
    """An argparse type for a URL path: starts with a slash, no query or spaces."""
    if not text.startswith("/") or any(c in text for c in "?# "):
        raise argparse.ArgumentTypeError(f"not a URL path starting with '/': {text!r}")
    return text


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the simulator's flags, help text and fault documentation to ``parser``."""
    parser.description = parser.description or (
        "Serve a WinCC API (--dialect) over a simulated plant whose values change, raise "
        "alarms and fill a history, so the gateway can be run and tested without a plant."
    )
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    add = parser.add_argument
    add("--host", default=_DEFAULTS.host, help="address to listen on (default %(default)s)")
    add(
        "--dialect",
        choices=("rest", "classic", "unified"),
        default=_DEFAULTS.dialect,
        help="the API served: rest; classic, the WinCC V7.5 SP2/V8 REST service; or "
        "unified, the GraphQL interface of WinCC Unified (default %(default)s)",
    )
    add(
        "--graphql-path",
        type=_path,
        default=_DEFAULTS.graphql_path,
        help="where --dialect unified serves GraphQL; with a trailing slash, the path "
        "without it redirects there (default %(default)s)",
    )
    add(
        "--auto-logoff",
        type=_number(float, 0.0, 1e9, open_low=True),
        default=_DEFAULTS.auto_logoff,
        metavar="SECONDS",
        help="inactivity that ends a --dialect unified session (default %(default)s)",
    )
    add(
        "--port",
        type=_number(int, 0, 65535),
        default=_DEFAULTS.port,
        help="port to listen on, 0 for any free one (default %(default)s)",
    )
    add(
        "--tags",
        type=_number(int, 1, 10_000_000),
        default=_DEFAULTS.tags,
        help="number of tags, System1.Area<a>.<Device><d>.<Signal> (default %(default)s)",
    )
    add(
        "--alarms",
        type=_number(int, 0, 10_000_000),
        default=_DEFAULTS.alarms,
        help="number of alarms, each on a limit of a level, temperature or speed tag "
        "(default %(default)s)",
    )
    add(
        "--tls",
        action="store_true",
        help="serve HTTPS; without --cert/--key a throwaway CA and certificate are made at "
        "start and the CA file to trust is printed",
    )
    add("--cert", help="PEM server certificate (chain) for --tls")
    add("--key", help="PEM private key of --cert")
    add("--username", default=_DEFAULTS.username, help="login user (default %(default)s)")
    add("--password", default=_DEFAULTS.password, help="login password (default %(default)s)")
    add(
        "--change-rate",
        type=_number(float, 0.0, 10.0),
        default=_DEFAULTS.change_rate,
        help="value changes per tag and second on average; alarm tags change ten times as "
        "often, within the same total; 0 freezes the plant (default %(default)s)",
    )
    add(
        "--bad-quality",
        type=_number(float, 0.0, 1.0),
        default=_DEFAULTS.bad_quality,
        help="share of changes with a bad or uncertain quality code (default %(default)s)",
    )
    add(
        "--latency",
        type=_number(int, 0, 600_000),
        default=_DEFAULTS.latency_ms,
        metavar="MS",
        help="delay before every /api/ response, milliseconds (default %(default)s)",
    )
    add(
        "--error-rate",
        type=_number(float, 0.0, 1.0),
        default=_DEFAULTS.error_rate,
        help="share of /api/ requests answered with HTTP 500 or 503 (default %(default)s)",
    )
    add(
        "--drop-rate",
        type=_number(float, 0.0, 1.0),
        default=_DEFAULTS.drop_rate,
        help="share of /api/ requests whose connection is closed unanswered (default %(default)s)",
    )
    add(
        "--token-ttl",
        type=_number(float, 0.0, 1e9, open_low=True),
        default=_DEFAULTS.token_ttl,
        metavar="SECONDS",
        help="lifetime of a login token (default %(default)s)",
    )
    add(
        "--clock-offset",
        type=_number(float, -31_622_400.0, 31_622_400.0),
        default=_DEFAULTS.clock_offset,
        metavar="SECONDS",
        help="how far the simulated WinCC clock runs ahead of this host's, negative for "
        "behind; its timestamps and archive use it (default %(default)s)",
    )
    add(
        "--html-login",
        action="store_true",
        help="answer /api/ with 200 and an HTML login page, as a proxy whose session ended",
    )
    add("--unauthorized", action="store_true", help="answer /api/, the login too, with 401")
    add(
        "--history-depth",
        type=_number(int, 1, 1_000_000),
        default=_DEFAULTS.history_depth,
        metavar="N",
        help="changes kept per tag for the history endpoint, up to 17 bytes each "
        "(default %(default)s)",
    )
    add(
        "--realistic",
        action="store_true",
        help="lay the plant out as a real project does: every tag a float, folders typed "
        "null when browsed, System1.Site<s>.Line<l>.Cell<c>.<Device><d>.<Signal>",
    )
    add(
        "--sweep",
        action="store_true",
        help="for throughput benchmarks: the drifting tags change in turn, with values "
        "that count up (bools toggle, strings cycle), a fraction of the CPU of the random "
        "plant; at --change-rate 1 a 1 s scan finds nearly every tag changed",
    )
    add("--seed", type=int, help="random seed, for a repeatable plant (default: random)")


def _options(args: argparse.Namespace) -> SimulatorOptions | str:
    """Options from parsed flags, or the problem with their combination."""
    if (args.cert is None) != (args.key is None):
        return "--cert and --key go together"
    for flag, path in (("--cert", args.cert), ("--key", args.key)):
        if path is not None and not Path(path).is_file():
            return f"{flag}: no such file: {path}"
    capacity = alarm_capacity(args.tags)
    if args.alarms > capacity:
        return f"--alarms: {args.tags} tags carry at most {capacity} alarms"
    return SimulatorOptions(
        host=args.host,
        port=args.port,
        tags=args.tags,
        alarms=args.alarms,
        username=args.username,
        password=args.password,
        change_rate=args.change_rate,
        bad_quality=args.bad_quality,
        latency_ms=args.latency,
        error_rate=args.error_rate,
        drop_rate=args.drop_rate,
        token_ttl=args.token_ttl,
        clock_offset=args.clock_offset,
        html_login=args.html_login,
        unauthorized=args.unauthorized,
        seed=args.seed,
        history_depth=args.history_depth,
        tls=args.tls or args.cert is not None,
        cert=args.cert,
        key=args.key,
        dialect=args.dialect,
        graphql_path=args.graphql_path,
        auto_logoff=args.auto_logoff,
        realistic=args.realistic,
        sweep=args.sweep,
    )


async def _serve(
    options: SimulatorOptions, context: ssl.SSLContext | None, ca_file: Path | None
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        # on Windows Ctrl+C arrives as KeyboardInterrupt instead, handled by run()
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    async with Simulator(options, context) as simulator:
        trust = "" if ca_file is None else f", CA certificate {ca_file}"
        where = simulator.url
        if options.dialect == "classic":
            where += f"{BASE_PATH} (alarm filter {ALARM_FILTER!r})"
        elif options.dialect == "unified":
            where += options.graphql_path
        print(
            f"WinCC {options.dialect} simulator on {where} (user {options.username!r}, "
            f"password {options.password!r}, {options.tags} tags, {options.alarms} "
            f"alarms{trust}); Ctrl+C stops",
            flush=True,
        )
        await stop.wait()


def run(args: argparse.Namespace) -> int:
    """Run until SIGINT or SIGTERM; 0 on a clean stop, 2 for bad arguments, 1 otherwise."""
    options = _options(args)
    if isinstance(options, str):
        print(f"wincc-gateway simulate: error: {options}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="wincc-sim-") as folder:
        try:
            context, ca_file = _tls(options, Path(folder))
        except ssl.SSLError as exc:  # --cert/--key exist but do not load
            print(f"wincc-gateway simulate: error: --cert/--key: {exc}", file=sys.stderr)
            return 2
        try:
            asyncio.run(_serve(options, context, ca_file))
        except KeyboardInterrupt:
            return 0
        except OSError as exc:  # port taken, address not local, ...
            print(f"wincc-gateway simulate: {exc}", file=sys.stderr)
            return 1
    return 0


def _tls(options: SimulatorOptions, folder: Path) -> tuple[ssl.SSLContext | None, Path | None]:
    """The server's TLS context, and the CA file to print when the certificate is made here."""
    if not options.tls:
        return None, None
    if options.cert and options.key:
        return load_server_context(options.cert, options.key), None
    context, ca_pem = make_server_context([options.host])
    ca_file = folder / "ca.pem"
    ca_file.write_bytes(ca_pem)
    return context, ca_file
