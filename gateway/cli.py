"""The ``wincc-gateway`` command line: parses arguments and calls; the work lives elsewhere.

Exit codes: 0 clean stop, 2 bad configuration or arguments, 1 anything else.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

import orjson

from gateway import __version__
from gateway.config import load_settings, redacted
from gateway.errors import ConfigError, GatewayError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_CONFIG = 2

_CONFIG_HELP = (
    "TOML config file (see config/gateway.example.toml); environment variables "
    "GATEWAY_<SECTION>__<KEY> override it. Without it, only defaults and the environment."
)


def _add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, metavar="FILE", help=_CONFIG_HELP)


def _add_logging(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        help="override [log] format: text for people, json for log collectors",
    )
    parser.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        help="override [log] level",
    )


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser; every command's --help is its documentation.

    The simulator's flags are loaded only when ``simulate`` is the command, so ``run``
    never imports the simulator (its web server, its certificate tooling).
    """
    parser = argparse.ArgumentParser(
        prog="wincc-gateway",
        description="Edge gateway: polls Siemens WinCC tags and alarms over HTTPS and "
        "publishes them to MQTT; turns MQTT commands into tag writes and alarm "
        "acknowledgements.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="run the gateway",
        description="Run the gateway until SIGTERM or SIGINT, then stop cleanly: in-flight "
        "publishes finish, the status topic is set to offline.",
    )
    _add_config(run)
    _add_logging(run)

    demo = commands.add_parser(
        "demo",
        help="simulator + embedded broker + gateway on loopback, with a live view",
        description="Start the WinCC simulator, an embedded MQTT broker and the gateway, "
        "all on loopback, and show tags and alarms live in the terminal. Needs no config "
        "and no outside services. Ctrl-C stops everything.",
    )
    demo.add_argument("--tags", type=int, default=200, help="simulated tags (default 200)")
    demo.add_argument(
        "--broker-port", type=int, default=0, help="port of the embedded broker (default: free)"
    )

    simulate = commands.add_parser(
        "simulate",
        help="the WinCC simulator alone (rest, classic or unified dialect)",
        description="Serve a WinCC API (--dialect rest, classic or unified) from a simulated "
        "plant, for development, demonstrations and acceptance tests.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    words = sys.argv[1:] if argv is None else argv
    if "simulate" in [word for word in words if not word.startswith("-")][:1]:
        from gateway.simulator import cli as simulator_cli  # noqa: PLC0415

        simulator_cli.configure_parser(simulate)

    check = commands.add_parser(
        "check-config",
        help="validate a config and print it with secrets redacted",
        description="Validate the configuration. Exit 0 and print the effective config "
        "(secrets redacted); exit 2 and print one line per problem, naming the key.",
    )
    _add_config(check)

    browse = commands.add_parser(
        "browse",
        help="list the tags the server offers, ready to paste into [[poll]]",
        description="Browse the WinCC server configured in [wincc] and print the tags under "
        "PATH (name, type, writable) as a TOML snippet for a [[poll]] table.",
    )
    _add_config(browse)
    browse.add_argument(
        "--path", default="", metavar="PREFIX", help="tag prefix, e.g. System1.Area1 (default: all)"
    )
    return parser


def _check_config(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    sys.stdout.write(orjson.dumps(redacted(settings), option=orjson.OPT_INDENT_2).decode())
    sys.stdout.write("\n")
    return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    from gateway.service import run_gateway  # noqa: PLC0415

    settings = load_settings(args.config)
    if args.log_format:
        settings.log.format = args.log_format
    if args.log_level:
        settings.log.level = args.log_level
    return asyncio.run(run_gateway(settings, args.config))


def _demo(args: argparse.Namespace) -> int:
    from gateway.demo.run import run_demo  # noqa: PLC0415

    return asyncio.run(run_demo(tags=args.tags, broker_port=args.broker_port))


def _browse(args: argparse.Namespace) -> int:
    from gateway.browse import browse_snippet  # noqa: PLC0415

    settings = load_settings(args.config)
    sys.stdout.write(asyncio.run(browse_snippet(settings.wincc, args.path)))
    return EXIT_OK


def _simulate(args: argparse.Namespace) -> int:
    from gateway.simulator import cli as simulator_cli  # noqa: PLC0415

    return simulator_cli.run(args)


_COMMANDS = {
    "run": _run,
    "demo": _demo,
    "simulate": _simulate,
    "check-config": _check_config,
    "browse": _browse,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script and of ``python -m gateway``."""
    args = build_parser(argv).parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except ConfigError as exc:
        for problem in exc.problems:
            sys.stderr.write(f"config: {problem}\n")
        return EXIT_BAD_CONFIG
    except GatewayError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_OK
