"""`foldaccel` console script: one entry point, one module per command group.

Each command module exposes ``register(subparsers)``; it adds its parser(s) and sets
``func=`` to a handler ``handler(args) -> int``. Handlers log to stderr and, with ``--json``,
print exactly one JSON object on stdout via :func:`sim.cli.common.emit`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from sim.cli.common import USER_ERRORS, UserError

# Command modules, in help order. Each defines register(subparsers).
COMMAND_MODULES = [
    "sim.cli.doctor",
    "sim.cli.model",
    "sim.cli.rtl",
    "sim.cli.bench",
    "sim.cli.quant",
    "sim.cli.estimate",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="foldaccel",
        description="Co-design kit for streaming speech encoders with folding attention: "
        "model, quantization, Amaranth RTL, Verilator/cocotb verification and a "
        "cycle-exact performance model.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args) or 0)
    except (UserError, *USER_ERRORS) as e:
        print(f"foldaccel {args.command}: error: {e}", file=sys.stderr)
        return 2
