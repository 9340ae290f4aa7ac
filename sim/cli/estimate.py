"""``foldaccel estimate gemm|layer|model`` and ``foldaccel sweep``: the performance model.

The estimator compiles the programs the RTL would run (a GEMM with the GEMM compiler, a
stream of segments with the layer compiler) and times them with the accelerator's timing
model, so its cycles equal the RTL's counters (``docs/PERF_MODEL.md``). It imports neither
torch nor amaranth.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path

from sim.cli.common import (
    USER_ERRORS,
    UserError,
    add_config_args,
    add_json_arg,
    config_from_args,
    emit,
    format_table,
    positive_int,
)
from sim.perf.backends import BackendError
from sim.perf.counts import BANKS
from sim.perf.energy import EnergyTableError, load_energy_table
from sim.perf.sweep import AXES, SweepError, parse_values

log = logging.getLogger(__name__)
USER_ERRORS.extend([EnergyTableError, SweepError, BackendError])


def _layers(text: str) -> int | None:
    """``--layers``: a positive count or ``all`` (None)."""
    if text == "all":
        return None
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a positive layer count or "
                                         "'all'") from None


def _int_list(text: str) -> list[int]:
    try:
        values = [int(p) for p in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of "
                                         "integers (e.g. 1,2,4)") from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"'{text}': values must be >= 1")
    return values


def _energy_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--energy-table", metavar="PATH",
                   help="TOML file overriding entries of the default energy table "
                   "(Horowitz ISSCC 2014, 45 nm; keys in docs/PERF_MODEL.md)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("estimate", help="cycles, SRAM, traffic, energy without RTL",
                       description="Performance model: cycles (equal to the RTL's counters: "
                       "the estimator times the programs the RTL runs), utilization, SRAM per "
                       "bank, host/DRAM traffic, energy and real-time factor.")
    esub = p.add_subparsers(dest="estimate_command", metavar="SUBCOMMAND")
    esub.required = True

    g = esub.add_parser("gemm", help="one (M x K) @ (K x N) GEMM program",
                        description="Compile one GEMM (same flags as 'foldaccel rtl gemm') "
                        "and estimate it; its cycles equal the RTL's counters.")
    g.add_argument("--m", type=positive_int, required=True, help="rows of A and C")
    g.add_argument("--k", type=positive_int, required=True, help="inner dimension")
    g.add_argument("--n", type=positive_int, required=True, help="columns of B and C")
    g.add_argument("--rows", type=positive_int,
                   help="override hardware.rows (default: the config's)")
    g.add_argument("--cols", type=positive_int,
                   help="override hardware.cols (default: the config's)")
    g.add_argument("--bias", action="store_true", help="add an int32 bias row")
    g.add_argument("--requant", action="store_true",
                   help="requantize to int8 (default: int32 output, as 'foldaccel rtl gemm')")
    g.add_argument("--relu", action="store_true", help="ReLU in the requantization")
    g.add_argument("--activation-b", action="store_true",
                   help="B is an on-chip activation (e.g. K^T), not a weight from DRAM")
    add_config_args(g, fold=False)
    _energy_arg(g)
    add_json_arg(g)
    g.set_defaults(func=cmd_gemm)

    lay = esub.add_parser("layer", help="the encoder's layers over S streaming segments",
                          description="The programs of 'foldaccel rtl layer' with the same "
                          "arguments: the first S segments (memory bank and left-context cache "
                          "filling up) through L layers; cycles are the total of the step "
                          "programs (the preload is reported apart), equal to the RTL's.")
    add_config_args(lay)
    lay.add_argument("--segments", type=positive_int, default=1, metavar="S")
    lay.add_argument("--layers", type=_layers, default=None, metavar="L",
                     help="first L layers, or 'all' (default)")
    lay.add_argument("--ops", action="store_true",
                     help="also print the last segment's program by opcode")
    _energy_arg(lay)
    add_json_arg(lay)
    lay.set_defaults(func=cmd_layer)

    mod = esub.add_parser("model", help="one steady-state segment through all layers",
                          description="The step program of one segment with a full memory "
                          "bank and left-context cache through every layer, timed; real-time "
                          "factor. With --compare-fold: the folding report.")
    add_config_args(mod)
    mod.add_argument("--compare-fold", type=_int_list, metavar="N,N,...",
                     help="folding report over these fold factors (fold 1 is the baseline; "
                     "default: no report, the config's fold)")
    mod.add_argument("--plot", metavar="PATH",
                     help="with --compare-fold: save a PNG (default: no plot)")
    mod.add_argument("--ops", action="store_true",
                     help="also print the segment's program by opcode")
    _energy_arg(mod)
    add_json_arg(mod)
    mod.set_defaults(func=cmd_model)

    s = sub.add_parser("sweep", help="design-space sweep with Pareto plots",
                       description="Evaluate the model estimate and the synthesized area "
                       "over a grid of hardware and folding parameters, optionally verifying "
                       "every point on the RTL, in a process pool or on a Ray cluster (each "
                       "result cached as it finishes, so a re-run computes only missing "
                       "points), and write sweep.csv, sweep.json and Pareto plots (energy vs "
                       "cycles, cycles vs SRAM, cycles vs area, energy vs area) into --out.")
    s.add_argument("--config", metavar="PATH",
                   help="TOML config the grid varies (default: configs/demo.toml)")
    for axis, fields in AXES.items():
        flag = "--" + axis.replace("_", "-")
        s.add_argument(flag, dest=f"axis_{axis}", metavar="V,V,...",
                       help=f"values of {' + '.join(fields)} (default: the config's)")
    s.add_argument("--out", required=True, metavar="DIR", help="output directory")
    s.add_argument("--jobs", type=positive_int,
                   help="worker processes, or CPUs of the local Ray cluster (default: CPU "
                   "count)")
    s.add_argument("--backend", choices=("pool", "ray"), default="pool",
                   help="where the points run: a local process pool or a Ray cluster")
    s.add_argument("--address", metavar="HOST:PORT",
                   help="with --backend ray: the running cluster's head (default: start a "
                   "local cluster); see docs/CLUSTER.md")
    s.add_argument("--verify-rtl", action="store_true",
                   help="also run every feasible point's layer programs on Verilator "
                   "(segments 0..steady) against the golden model; records rtl_cycles and "
                   "rtl_mismatches (default off)")
    s.add_argument("--seed", type=int, default=0,
                   help="with --verify-rtl: seed of the random model and input")
    s.add_argument("--no-area", action="store_true",
                   help="skip the synthesis of each hardware config (no area_mm2 column, "
                   "no area Pareto plots)")
    s.add_argument("--cache-dir", metavar="DIR", help="result cache (default: DIR/cache)")
    s.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    _energy_arg(s)
    add_json_arg(s)
    s.set_defaults(func=cmd_sweep)


# ------------------------------------------------------------------------------ printing


def _kib(b: float) -> str:
    return f"{b / 1024:,.1f} KiB"


def _show(est: dict, args: argparse.Namespace, cfg, title: str) -> int:
    """Emit ``est`` as JSON, or print its summary (and the op table with ``--ops``)."""
    est["config"] = cfg.source
    if args.json:
        emit(est)
        return 0
    est["clock_mhz"] = cfg.hardware.clock_mhz
    _print_summary(est, title)
    if getattr(args, "ops", False):
        _print_ops(est["ops"])
    return 0


def _print_summary(est: dict, title: str) -> None:
    print(title)
    rows = [[b, est["sram_bytes"][b], est["sram_capacity_bytes"][b],
             "yes" if est["sram_fits"][b] else "NO", est["sram_reads"][b], est["sram_writes"][b]]
            for b in BANKS]
    busy = ", ".join(f"{u} {v:,}" for u, v in est["busy"].items() if v)
    print(f"cycles {est['cycles']:,} ({est['time_us']:,.2f} us), MAC utilization "
          f"{100 * est['utilization']:.1f}%, MACs {est['macs']:,}, busy: {busy}, stall "
          f"{est['stall']:,}")
    print(format_table(["bank", "peak bytes", "capacity", "fits", "reads (B)", "writes (B)"],
                       rows))
    h = est["host_bytes"]
    print(format_table(["host traffic", "bytes"],
                       [["in: input rows", h["in_input"]], ["in: weights/constants",
                                                            h["in_weights"]],
                        ["in: spilled state", h["in_state"]], ["out: output rows", h["out"]],
                        ["out: spilled state", h["out_state"]],
                        ["total (DRAM)", est["dram_bytes"]]]))
    if "weights" in est and "preload" in est:
        pre = est["preload"]
        print(f"weights {est['weights']}, state {est['state']}; preload program "
              f"{pre['cycles']:,} cycles, {pre['bytes']:,} bytes (once, not in the cycles)")
    print(f"energy {est['energy_pj'] / 1e6:,.3f} uJ")
    bd = est["energy_breakdown_pj"]
    print("energy breakdown: " + ", ".join(f"{k} {100 * v / bd['total']:.1f}%"
                                           for k, v in bd.items() if k != "total"))
    if "rtf" in est:
        print(f"real-time factor {est['rtf']:.4g} ({est['compute_ms']:.4g} ms compute for "
              f"{est['audio_ms']:g} ms of audio at {est.get('clock_mhz', '')} MHz)")


def _print_ops(ops: list[dict]) -> None:
    print(format_table(["opcode", "unit", "instructions", "unit occupancy (cycles)"],
                       [[o["op"], o["unit"], o["count"], o["occupancy"]] for o in ops]))


# ------------------------------------------------------------------------------ handlers


def _config(args: argparse.Namespace):
    cfg = config_from_args(args)
    over = {k: getattr(args, k) for k in ("rows", "cols") if getattr(args, k, None)}
    return cfg.replace(**over) if over else cfg


#: GEMMs from this many MACs on take seconds to compile and time: show progress.
LARGE_GEMM_MACS = 2**30


@contextlib.contextmanager
def _working(note: str, out: dict, enabled: bool = True) -> Iterator[None]:
    """Progress around a long estimate; ``out`` receives ``estimate_s`` (the seconds the
    estimate took) and ``cache`` (which cache answered: ``none``, ``memory`` or ``disk``)."""
    from sim.perf.diskcache import answered_by, cache_answers
    from sim.progress import working

    t0 = time.perf_counter()
    with cache_answers() as answers, working("estimate", note, enabled=enabled):
        yield
    out["estimate_s"] = round(time.perf_counter() - t0, 6)
    out["cache"] = answered_by(answers)


def _estimate_errors():
    from model.config import ConfigError
    return (ConfigError, ValueError)


def cmd_gemm(args: argparse.Namespace) -> int:
    from sim.perf.estimate import estimate_gemm
    cfg = _config(args)
    table = load_energy_table(args.energy_table)
    timing: dict = {}
    try:
        with _working("compile and time the GEMM program", timing,
                      args.m * args.k * args.n >= LARGE_GEMM_MACS):
            est = estimate_gemm(args.m, args.k, args.n, cfg.hardware, bias=args.bias,
                                requant=args.requant, relu=args.relu,
                                weight=not args.activation_b, table=table)
    except _estimate_errors() as e:
        raise UserError(str(e)) from None
    hw = cfg.hardware
    est["hardware"] = {"rows": hw.rows, "cols": hw.cols}
    est.update(timing)
    return _show(est, args, cfg, f"GEMM {args.m}x{args.k} @ {args.k}x{args.n} on a "
                 f"{hw.rows}x{hw.cols} array ({cfg.source})")


def cmd_layer(args: argparse.Namespace) -> int:
    from sim.perf.estimate import estimate_layer
    cfg = _config(args)
    table = load_energy_table(args.energy_table)
    timing: dict = {}
    try:
        with _working(f"compile and time {args.segments} segment(s)", timing):
            est = estimate_layer(cfg, args.segments, args.layers, table=table, ops=args.ops)
    except _estimate_errors() as e:
        raise UserError(str(e)) from None
    est.update(timing)
    return _show(est, args, cfg, f"{est['layers']} layer(s), {args.segments} segment(s), fold "
                 f"{cfg.model.fold_factor} ({cfg.source}); per-segment cycles "
                 f"{est['per_segment_cycles']}")


def cmd_model(args: argparse.Namespace) -> int:
    from sim.perf.estimate import compare_fold, estimate_model
    cfg = config_from_args(args)
    table = load_energy_table(args.energy_table)
    if args.plot and not args.compare_fold:
        raise UserError("--plot needs --compare-fold; fix: add e.g. --compare-fold 1,2,4")
    if args.plot:  # checked before the work, not after it
        from sim.fileio import check_writable
        if not Path(args.plot).parent.is_dir():
            raise UserError(f"--plot directory '{Path(args.plot).parent}' does not exist; "
                            "fix: create it or choose another path")
        check_writable(Path(args.plot), "--plot")
    timing: dict = {}
    try:
        with _working("compile and time the model's step program(s)", timing):
            if args.compare_fold:
                rep = compare_fold(cfg, args.compare_fold, table=table)
            else:
                est = estimate_model(cfg, table=table, ops=args.ops)
    except _estimate_errors() as e:
        raise UserError(str(e)) from None
    if args.compare_fold:
        rep.update(timing)
        return _fold_report(rep, args)
    est.update(timing)
    m = cfg.model
    return _show(est, args, cfg, f"steady-state segment {est['segment']} through "
                 f"{m.n_layers} layers, fold {m.fold_factor} ({cfg.source})")


def _fold_report(rep: dict, args: argparse.Namespace) -> int:
    folds = rep["folds"]
    if args.plot:
        from sim.fileio import atomic_write
        from sim.perf.plots import fold_plot
        bars = {"constant\nbytes": "weight_bytes", "DRAM bytes": "dram_bytes",
                "energy": "energy_pj", "cycles": "cycles", "MACs": "macs"}
        rel = {label: [rep["metrics"][k][str(f)] / rep["metrics"][k]["1"] for f in folds]
               for label, k in bars.items()}
        path = Path(args.plot)
        atomic_write(path, fold_plot(folds, rel, f"Folding vs fold 1 — "
                                     f"{Path(rep['config']).name}, one segment per fold"))
        rep["plot"] = str(path)
        log.info("wrote %s", path)
    if args.json:
        emit(rep)
        return 0
    header = ["metric"] + [f"fold {f}" for f in folds] + [f"fold {f} vs 1" for f in folds[1:]]
    rows = []
    for key, label in rep["labels"].items():
        vals = rep["metrics"][key]
        red = rep["reduction_vs_fold1"][key]
        cells = [round(vals[str(f)], 4) if isinstance(vals[str(f)], float) and
                 vals[str(f)] < 100 else round(vals[str(f)]) for f in folds]
        rows.append([label, *cells,
                     *[f"{-100 * red[str(f)] + 0.0:+.1f}%" for f in folds[1:]]])
    print(f"folding report ({rep['config']}); weights / state per fold: "
          + ", ".join(f"{f}: {p} / {rep['state'][f]}" for f, p in rep["weights"].items()))
    print(format_table(header, rows))
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from sim.perf.sweep import run_sweep
    cfg = config_from_args(args)
    table = load_energy_table(args.energy_table)
    axes = {a: parse_values(a, getattr(args, f"axis_{a}")) for a in AXES
            if getattr(args, f"axis_{a}") is not None}
    res = run_sweep(cfg, axes, args.out, table=table, jobs=args.jobs,
                    cache_dir=args.cache_dir, progress=not args.no_progress,
                    area=not args.no_area, verify_rtl=args.verify_rtl, seed=args.seed,
                    backend=args.backend, address=args.address)
    log.info("%d points (%d cached, %d failed) in %.1f s -> %s", len(res.rows), res.cached,
             res.failed, res.seconds, args.out)
    errors = [r for r in res.rows if r.get("error")]
    mismatches = sum(r.get("rtl_mismatches", 0) for r in res.rows)
    # failed tasks and RTL checks that failed make the exit code 1 (infeasible points do not)
    status = 1 if res.failed or any(r["feasible"] and r.get("error") for r in res.rows) else 0
    if args.json:
        emit({"points": len(res.rows), "cached": res.cached, "failed": res.failed,
              "errors": len(errors), "rtl_mismatches": mismatches if args.verify_rtl else None,
              "seconds": round(res.seconds, 3), "files": res.files, "pareto": res.pareto})
        return status
    area = "area_cycles" in res.pareto
    front = res.pareto["area_cycles_energy" if area else "energy_cycles"]
    print(f"{len(res.rows)} points ({res.cached} cached, {res.failed} failed) in "
          f"{res.seconds:.1f} s; files: " + ", ".join(res.files.values()))
    if args.verify_rtl:
        print(f"RTL: {sum('rtl_cycles' in r for r in res.rows)} points run, {mismatches} "
              "mismatches")
    for r in errors:
        print(f"  {r['rows']}x{r['cols']} fold {r['fold']}: {r['error']}")
    print("Pareto front, " + ("area vs cycles vs energy:" if area else "energy vs cycles:"))
    print(format_table(["rows", "cols", "fold", "SRAM KiB", *(["area mm2"] if area else []),
                        "cycles", "energy uJ", "RTF"],
                       [[r["rows"], r["cols"], r["fold"], r["sram_kib"],
                         *([round(r["area_mm2"], 3)] if area else []), r["cycles"],
                         round(r["energy_uj"], 3), round(r["rtf"], 4)]
                        for r in (res.rows[i] for i in front)]))
    return status
