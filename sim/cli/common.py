"""Shared pieces of the CLI: common arguments, JSON output, user-facing errors."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from model.config import Config, ConfigError, load_config


class UserError(Exception):
    """An error caused by the user's input or environment; printed without a traceback."""


# Errors from the library that are the user's to fix. Modules may append their own types.
USER_ERRORS: list[type[BaseException]] = [ConfigError]


def add_config_args(p: argparse.ArgumentParser, required: bool = False) -> None:
    """``--config PATH`` and ``--fold N`` (overrides ``model.fold_factor``)."""
    p.add_argument("--config", required=required, metavar="PATH",
                   help="TOML config (model + hardware); default: configs/demo.toml")
    p.add_argument("--fold", type=int, metavar="N", help="override model.fold_factor")


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


def format_table(header: list[str], rows: list[list[Any]]) -> str:
    """Plain-text table with right-aligned numeric columns."""
    cells = [[str(h) for h in header]] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = []
    for n, r in enumerate(cells):
        lines.append("  ".join(c.rjust(w) if _numeric(c) else c.ljust(w)
                               for c, w in zip(r, widths, strict=True)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _numeric(cell: str) -> bool:
    return cell.lstrip("+-").replace(",", "").replace(".", "", 1).rstrip("%x").isdigit()


def _fmt(c: Any) -> str:
    if isinstance(c, float):
        return f"{c:,.4g}" if abs(c) < 1e4 else f"{c:,.0f}"
    if isinstance(c, int) and not isinstance(c, bool):
        return f"{c:,}"
    return str(c)
