"""`foldaccel` console script: one entry point, one module per command group.

Each command module exposes ``register(subparsers)``; it adds its parser(s) and sets
``func=`` to a handler ``handler(args) -> int``. Handlers log to stderr and, with ``--json``,
print exactly one JSON object on stdout via :func:`sim.cli.common.emit`.

:func:`main` is the one place that turns failures into exit codes: a user error (bad input,
unusable path, missing toolchain) prints one ``foldaccel CMD: error: ...`` line and exits 2;
Ctrl-C prints ``interrupted`` and exits 130; a closed stdout pipe (``| head``) ends quietly.
Files are written atomically everywhere, so neither leaves half-written output behind.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import logging
import os
import sys

from sim.cli.common import USER_ERRORS, HelpFormatter, UserError, user_errors

# Command modules, in help order. Each defines register(subparsers).
COMMAND_MODULES = [
    "sim.cli.demo",
    "sim.cli.doctor",
    "sim.cli.model",
    "sim.cli.rtl",
    "sim.cli.hw",
    "sim.cli.bench",
    "sim.cli.quant",
    "sim.cli.estimate",
    "sim.cli.speech",
    "sim.cli.asr",
]

#: Exit codes.
EXIT_USER_ERROR, EXIT_INTERRUPTED = 2, 130


def _version() -> str:
    try:
        return importlib.metadata.version("foldaccel")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - source checkout
        return "unknown"


def _subparsers(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                yield sub
                yield from _subparsers(sub)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="foldaccel", formatter_class=HelpFormatter,
        description="Co-design kit for streaming speech encoders with folding attention: "
        "model, quantization, Amaranth RTL, Verilator/cocotb verification and a "
        "cycle-exact performance model. Start with 'foldaccel demo'.")
    parser.add_argument("--version", action="version", version=f"foldaccel {_version()}")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="debug logging on stderr (default off; also accepted after the "
                        "subcommand)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    for p in _subparsers(parser):  # -v after the subcommand too, and defaults in --help
        p.formatter_class = HelpFormatter
        if "-v" not in p._option_string_actions:
            p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                           help="debug logging on stderr (default off)")
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
    except KeyboardInterrupt:  # Ctrl-C while starting up
        print("\nfoldaccel: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr, force=True,
    )
    name = " ".join(str(getattr(args, k)) for k in vars(args)
                    if k == "command" or k.endswith("_command"))
    try:
        return int(args.func(args) or 0)
    except (UserError, *USER_ERRORS, *user_errors()) as e:
        print(f"foldaccel {name}: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"\nfoldaccel {name}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # stdout was closed early (e.g. `| head`): stop quietly; point stdout at /dev/null
        # so the interpreter's final flush does not raise again
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except OSError as e:
        # a file the command needed could not be read or written
        where = f" '{e.filename}'" if e.filename else ""
        print(f"foldaccel {name}: error: {e.strerror or e}{where}; fix: check that "
              "the path exists and is writable", file=sys.stderr)
        return EXIT_USER_ERROR
