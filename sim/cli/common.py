"""Shared pieces of the CLI: common arguments, JSON output, user-facing errors."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from model.config import CONFIG_DIR, Config, ConfigError, load_config
from sim.tables import format_table  # noqa: F401  (re-exported for the command modules)


class UserError(Exception):
    """An error caused by the user's input or environment; printed without a traceback."""


# Errors from the library that are the user's to fix. Modules may append their own types.
USER_ERRORS: list[type[BaseException]] = [ConfigError]


def user_errors() -> tuple[type[BaseException], ...]:
    """The error types of the toolchain, the RTL runner and output paths: user-facing in
    every command (a missing Verilator, a failed build, an unwritable path)."""
    from sim.fileio import OutputPathError
    from sim.rtl.jobs import AccelRunError
    from sim.rtl.runner import RtlBuildError, RtlRunError
    from sim.rtl.toolchain import ToolchainError
    return (OutputPathError, ToolchainError, RtlBuildError, RtlRunError, AccelRunError)


class HelpFormatter(argparse.HelpFormatter):
    """Adds ``(default X)`` to an option's help unless the help already states a default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("default" in text or not action.option_strings or action.required
                or action.default is argparse.SUPPRESS
                or isinstance(action, (argparse._HelpAction, argparse._VersionAction))):
            return text
        if isinstance(action, argparse._StoreTrueAction):
            return f"{text} (default off)"
        if action.default is None:
            return text  # tests/test_cli_help.py requires such options to state it
        return f"{text} (default %(default)s)"


def add_config_args(p: argparse.ArgumentParser, required: bool = False,
                    fold: bool = True, default: str | None = None) -> None:
    """``--config PATH`` (``default``: a file in ``configs/``, else the embedded default
    ``configs/demo.toml``) and, for commands that use the model, ``--fold N`` (overrides
    ``model.fold_factor``)."""
    p.add_argument("--config", required=required, metavar="PATH",
                   default=None if default is None else str(CONFIG_DIR / default),
                   help="TOML config (model + hardware); default: configs/"
                   f"{default or 'demo.toml'}")
    if fold:
        p.add_argument("--fold", type=int, metavar="N",
                       help="override model.fold_factor (default: the config's)")


def seed_value(text: str) -> int:
    """``--seed``: an integer >= 0 (numpy's generators refuse negative seeds)."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer; fix: use a seed "
                                         "like 0 or 1234") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"{v} is negative; fix: use a seed >= 0")
    return v


def positive_int(text: str) -> int:
    """An option's integer value >= 1 (argparse ``type=``)."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{v} must be >= 1")
    return v


def add_seed_arg(p: argparse.ArgumentParser, default: int, what: str) -> None:
    """``--seed S`` (>= 0) with ``what`` it seeds and its default in the help."""
    p.add_argument("--seed", type=seed_value, default=default, metavar="S",
                   help=f"seed of {what} (default {default})")


def add_json_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true",
                   help="print exactly one JSON object on stdout")


def config_from_args(args: argparse.Namespace) -> Config:
    """Load the config named by ``--config``/``--fold``; raise :class:`UserError` if bad."""
    try:
        return load_config(getattr(args, "config", None), getattr(args, "fold", None))
    except ConfigError as e:
        raise UserError(str(e)) from None


def emit(obj: dict[str, Any]) -> None:
    """Print one JSON object on stdout."""
    json.dump(obj, sys.stdout, indent=2, sort_keys=False, default=_json_default)
    sys.stdout.write("\n")
    sys.stdout.flush()


def _json_default(o: Any) -> Any:
    try:
        import numpy as np
    except ImportError:  # pragma: no cover
        np = None
    if np is not None:
        if isinstance(o, np.integer):
            return int(o)
        if isinstance(o, np.floating):
            return float(o)
        if isinstance(o, np.ndarray):
            return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
