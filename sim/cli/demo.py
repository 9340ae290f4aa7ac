"""``foldaccel demo``: the main job -- the whole encoder on the RTL at fold 1 and fold 2.

See :mod:`sim.demo`. Prints a table per fold factor and the comparison; writes
``report.md``, ``report.json``, ``cycles_energy.png``, ``rtl_vs_estimate.png`` and the
exported weights into ``--out``. Exit 0 when every element matched the golden model and the
estimator's cycles equalled the RTL's, 1 otherwise.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from sim.cli.common import USER_ERRORS, UserError, add_json_arg, add_seed_arg, emit
from sim.demo.run import (
    QUICK_CONFIG,
    QUICK_SEGMENTS,
    QUICK_SPEECH_SAY,
    SEGMENTS,
    SPEECH_SAY,
    DemoError,
)

log = logging.getLogger("foldaccel.demo")
USER_ERRORS.append(DemoError)

DEFAULT_OUT = "foldaccel-demo"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="the main job: the quantized encoder on the RTL, fold 1 vs fold 2",
        description="Build the float model, calibrate and quantize it, export the weights, "
        "generate the RTL and build it with Verilator, run S streaming segments of the whole "
        "encoder on the RTL for fold factors 1 and 2, check every output element and the "
        "final streaming state against the golden model, estimate the same programs (cycles "
        "must equal the RTL's), and report parameters, cycles, SRAM, traffic, energy, power, "
        "real-time factor and SQNR per fold factor. Then it recognizes spoken digits "
        f"(\"{SPEECH_SAY}\", with --quick \"{QUICK_SPEECH_SAY}\", synthesized with an unseen "
        "voice) with the trained fold-2 speech model on the RTL and checks that the transcript "
        "and every logit equal the golden model's. Writes report.md, report.json, plots and "
        "the weights into --out. The Verilator build is cached: a second run is faster.")
    p.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                   help=f"output directory: new, empty or an earlier demo's (default "
                   f"./{DEFAULT_OUT})")
    p.add_argument("--config", metavar="PATH",
                   help=f"TOML config (default configs/demo.toml; with --quick "
                   f"configs/{QUICK_CONFIG})")
    p.add_argument("--segments", type=int, metavar="S",
                   help=f"streaming segments per fold factor (default {SEGMENTS}; with "
                   f"--quick {QUICK_SEGMENTS})")
    p.add_argument("--quick", action="store_true",
                   help=f"small run: configs/{QUICK_CONFIG} and {QUICK_SEGMENTS} segments "
                   "unless given (default off)")
    add_seed_arg(p, 0, "the float weights, the calibration data and the input utterance")
    p.add_argument("--keep-runs", action="store_true",
                   help="keep the simulator's scratch folders under build/runs/ (default: "
                   "removed after a successful run)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar on stderr (default: shown on a terminal)")
    add_json_arg(p)
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from model.config import CONFIG_DIR, ConfigError, load_config
    from sim.demo.report import text_report, write_report
    from sim.demo.run import DemoPlan, preflight, prepare_out, run_demo

    segments = args.segments if args.segments is not None else (
        QUICK_SEGMENTS if args.quick else SEGMENTS)
    if segments < 1:
        raise UserError(f"--segments {segments} must be >= 1")
    path = args.config or (CONFIG_DIR / QUICK_CONFIG if args.quick else None)
    try:
        cfg = load_config(path)
    except ConfigError as e:
        raise UserError(str(e)) from None
    preflight()
    out = prepare_out(Path(args.out))
    plan = DemoPlan(cfg, out, segments, seed=args.seed, keep_runs=args.keep_runs,
                    say=QUICK_SPEECH_SAY if args.quick else SPEECH_SAY)
    log.info("demo on %s: %d segments, fold 1 and 2 -> %s", cfg.source, segments, out)
    rep = run_demo(plan, progress=not args.no_progress)
    files = write_report(rep, out)
    if args.json:
        emit(rep)
    else:
        print(text_report(rep))
        print("files: " + ", ".join(files.values()))
    if not rep["ok"]:
        print("foldaccel demo: the RTL differs from the golden model or the estimator",
              file=sys.stderr)
    return 0 if rep["ok"] else 1
