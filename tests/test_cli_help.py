"""Every option of every subcommand states its default in --help; -v and --version work."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from sim.cli import _subparsers, build_parser, main
from sim.cli.common import HelpFormatter


def _options():
    parser = build_parser()
    for p in [parser, *_subparsers(parser)]:
        for a in p._actions:
            if a.option_strings and not isinstance(a, (argparse._HelpAction,
                                                       argparse._VersionAction)):
                yield p.prog, a


def test_every_option_states_its_default():
    fmt = HelpFormatter("x")
    missing = [f"{prog} {a.option_strings[-1]}" for prog, a in _options()
               if not a.required and "default" not in fmt._get_help_string(a)]
    assert not missing, "options whose --help does not state a default: " + ", ".join(missing)


def test_help_shows_defaults_of_valued_options(capsys):
    with pytest.raises(SystemExit) as e:
        main(["rtl", "layer", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "(default 4)" in out and "-v, --verbose" in out


def test_verbose_after_the_subcommand(capsys):
    assert main(["model", "info", "--config", "configs/tiny.toml", "-v", "--json"]) == 0
    assert main(["-v", "model", "info", "--config", "configs/tiny.toml", "--json"]) == 0


def test_version():
    r = subprocess.run([sys.executable, "-m", "sim.cli", "--version"], capture_output=True,
                       text=True)
    assert r.returncode == 0 and r.stdout.startswith("foldaccel ")
