"""`foldaccel rtl gemm`: a seeded random GEMM on the Verilated accelerator, checked bit for bit.

The GEMM is compiled (hw/compiler.py), executed by the ISA simulator and by the RTL (host
data movement included in the cycle count), and compared with the numpy golden
(``model.intops``); the timing model's prediction is reported beside the RTL counters.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

import numpy as np

from hw.compiler import CompileError, GemmProgram, check_gemm, compile_gemm
from hw.isa import IsaError
from hw.timing import program_cycles
from hw.uarch import ACT, WGT, AccelParams
from model.config import ConfigError
from model.intops import gemm_i32, requantize
from sim.cli.common import (
    USER_ERRORS,
    UserError,
    add_config_args,
    add_json_arg,
    add_seed_arg,
    config_from_args,
    emit,
    format_table,
)
from sim.isa_sim import IsaSimError, simulate
from sim.rtl.jobs import AccelRunError, Job, run_jobs

log = logging.getLogger("foldaccel.rtl")
USER_ERRORS.extend([CompileError, IsaError, IsaSimError, AccelRunError])


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rtl", help="run programs on the Verilated accelerator",
                       description="Run accelerator programs on the Verilator simulation of "
                       "the Amaranth RTL.")
    rsub = p.add_subparsers(dest="rtl_command", metavar="SUBCOMMAND")
    rsub.required = True
    g = rsub.add_parser("gemm", help="seeded random GEMM on the RTL, checked against numpy",
                        description="Compile C = A @ B (+ bias) for the configured array, run "
                        "it on the RTL (host transfers included), compare every element with "
                        "the numpy golden and report cycles from the RTL counters.")
    g.add_argument("--m", type=int, required=True, help="rows of A and C")
    g.add_argument("--k", type=int, required=True, help="columns of A, rows of B")
    g.add_argument("--n", type=int, required=True, help="columns of B and C")
    g.add_argument("--rows", type=int, help="override hardware.rows (default: the config's)")
    g.add_argument("--cols", type=int, help="override hardware.cols (default: the config's)")
    add_seed_arg(g, 0, "the operands")
    g.add_argument("--bias", action="store_true", help="add a random int32 bias per column")
    g.add_argument("--requant", action="store_true",
                   help="requantize to int8 with random per-column multiplier and shift")
    g.add_argument("--relu", action="store_true", help="ReLU in the requantization")
    _run_args(g)
    add_config_args(g, fold=False)
    add_json_arg(g)
    g.set_defaults(func=gemm)
    la = rsub.add_parser(
        "layer", help="streaming segments of the encoder on the RTL, checked against golden",
        description="Compile the quantized encoder's streaming step (all layers, or the first "
        "L) into accelerator programs, run S consecutive segments on the Verilated RTL with "
        "the memory banks and left-context caches kept on chip, and compare every output "
        "element of every segment and the final rings with the integer golden model; the RTL "
        "counters are compared with the timing model. Without --weights a seeded model is "
        "built and quantized first.")
    la.add_argument("--weights", metavar="DIR",
                    help="directory written by 'foldaccel export' (default: build and "
                    "quantize a model from --seed)")
    la.add_argument("--segments", type=int, default=4, metavar="S",
                    help="streaming segments to run (default 4)")
    la.add_argument("--layers", type=int, metavar="L", help="run the first L layers only "
                    "(default: all)")
    add_seed_arg(la, 0, "the model (without --weights) and of the input utterance")
    _run_args(la)
    add_config_args(la)
    add_json_arg(la)
    la.set_defaults(func=layer)


def _run_args(p: argparse.ArgumentParser) -> None:
    """``--waves [PATH]`` and ``--keep-runs``, shared by the RTL commands."""
    p.add_argument("--waves", nargs="?", const="", default=None, metavar="PATH",
                   help="write a waveform (FST, or VCD without the lz4 headers) to PATH "
                   "(default: none; without PATH: build/waves/<design>-<time>.fst|vcd). "
                   "Tracing needs its own Verilator build (cached): compiled into the normal "
                   "build it would cost ~3x build time and ~12%% simulation speed")
    p.add_argument("--keep-runs", action="store_true",
                   help="keep the simulator's scratch folder under build/runs/ (default: "
                   "removed after a successful run; failed runs always keep it)")


def _waves(args: argparse.Namespace) -> dict:
    """``run_jobs`` keywords of ``--waves``/``--keep-runs``."""
    return {"waves": args.waves is not None, "waves_path": args.waves or None,
            "keep_runs": args.keep_runs}


def random_operands(m: int, k: int, n: int, seed: int, bias: bool, requant: bool):
    """Seeded int8 A, B, and (optional) int32 bias and requant (mult, shift) per column."""
    rng = np.random.default_rng(seed)
    a = rng.integers(-128, 128, (m, k))
    b = rng.integers(-128, 128, (k, n))
    bias_v = rng.integers(-(2**20), 2**20, n) if bias else None
    mult = shift = None
    if requant:  # real scale ~ 1/(sqrt(K) * 2**7): outputs spread over the int8 range
        mult = rng.integers(16384, 32768, n)
        shift = np.full(n, 21 + int(np.ceil(np.log2(k))) // 2) + rng.integers(-1, 2, n)
    return a, b, bias_v, mult, shift


def run_gemm(hw, m: int, k: int, n: int, *, seed: int = 0, bias: bool = False,
             requant: bool = False, relu: bool = False, waves: bool = False,
             waves_path=None, keep_runs: bool = False) -> dict:
    """Compile, simulate (ISA + RTL), compare; the result dict of ``rtl gemm --json``."""
    from sim.rtl.designs import harness_depths

    t0 = time.monotonic()
    depths = harness_depths(hw)
    p = AccelParams.from_hw(hw)
    check_gemm(m, k, n, p, bias=bias, requant=requant, relu=relu)
    # every operand byte crosses the host link at least once: refuse hopeless sizes early
    mt, nt = -(-m // hw.rows), -(-n // hw.cols)
    _fits("input beats (at least)", mt * k * p.beats(ACT) + nt * k * p.beats(WGT),
          depths["dmem_depth"])
    prog: GemmProgram = compile_gemm(m, k, n, hw, bias=bias, requant=requant, relu=relu)
    _fits("instructions", len(prog.instrs), depths["imem_depth"])
    _fits("input beats", prog.n_in_beats, depths["dmem_depth"])
    _fits("output beats", prog.n_out_beats, depths["omem_depth"])
    a, b, bias_v, mult, shift = random_operands(m, k, n, seed, bias, requant)
    want = gemm_i32(a, b, bias_v)
    if requant:
        want = requantize(want, mult, shift, relu=relu)
    din = prog.pack_inputs(a, b, bias_v, mult, shift)
    sim = simulate(prog.instrs, hw, din)
    sim_out = prog.unpack_output(sim.dout)
    model = program_cycles(prog, hw)
    log.info("%s", prog.describe())
    records, result = run_jobs(hw, [Job(prog.words(), din, 4 * model["total"] + 10000)],
                               waves=waves, waves_path=waves_path, keep_runs=keep_runs)
    rec = records[0]
    if not rec.ok:
        raise AccelRunError(f"RTL run failed: {rec.describe(prog.words())} "
                            f"(log {result.log_file})")
    got = prog.unpack_output(rec.dout)
    bad = np.argwhere(got != want)
    for i, j in bad[:10]:
        log.error("mismatch C[%d,%d]: expected %d, RTL %d (seed %d)", i, j, want[i, j],
                  got[i, j], seed)
    cycles = rec.counters["total"]
    macs = m * k * n
    out = {
        "m": m, "k": k, "n": n, "rows": hw.rows, "cols": hw.cols, "seed": seed,
        "bias": bias, "requant": requant, "relu": relu,
        "cycles": cycles,
        "mismatches": int(len(bad)),
        "isa_sim_mismatches": int(np.count_nonzero(sim_out != want)),
        "macs": macs,
        "utilization": macs / (hw.rows * hw.cols * cycles),
        "mac_bound_ratio": cycles / (macs / (hw.rows * hw.cols)),
        "model_cycles": model["total"],
        "model_matches_rtl": model == rec.counters,
        "counters": rec.counters,
        "instructions": len(prog.instrs),
        "in_beats": prog.n_in_beats,
        "out_beats": prog.n_out_beats,
        "plan": prog.plan,
        "sim_s": round(rec.wall_s, 3),
        "wall_s": round(time.monotonic() - t0, 3),
        "waves": str(result.waves_file) if result.waves_file else None,
    }
    return out


def _fits(what: str, need: int, have: int) -> None:
    if need > have:
        raise UserError(f"the program needs {need} {what}; the simulation host model holds "
                        f"{have}; fix: run a smaller GEMM")


def gemm(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    over = {k: v for k, v in (("rows", args.rows), ("cols", args.cols)) if v is not None}
    try:
        cfg = cfg.replace(**over) if over else cfg
    except ConfigError as e:
        raise UserError(str(e)) from None
    if args.relu and not args.requant:
        raise UserError("--relu needs --requant (ReLU is applied during requantization)")
    res = run_gemm(cfg.hardware, args.m, args.k, args.n, seed=args.seed, bias=args.bias,
                   requant=args.requant, relu=args.relu, **_waves(args))
    if args.json:
        emit(res)
    else:
        rows = [[k, res[k]] for k in ("cycles", "model_cycles", "mismatches",
                                      "isa_sim_mismatches", "macs", "utilization",
                                      "mac_bound_ratio", "instructions", "in_beats",
                                      "out_beats", "wall_s")]
        rows += [[f"counter {k}", v] for k, v in res["counters"].items()]
        print(f"GEMM {args.m}x{args.k}x{args.n} on {res['rows']}x{res['cols']} (seed "
              f"{args.seed})")
        print(format_table(["quantity", "value"], rows))
        if res["waves"]:
            print(f"waves: {res['waves']}")
    ok = res["mismatches"] == 0 and res["isa_sim_mismatches"] == 0
    if not ok:
        print("foldaccel rtl gemm: RTL/ISA output differs from numpy", file=sys.stderr)
    return 0 if ok else 1


def layer(args: argparse.Namespace) -> int:
    from hw.layer.symbols import LayerCompileError
    from model.export import ExportError, load_export
    from sim.rtl.layer_run import run_stream
    from sim.stream import report_dict

    if args.weights and args.config is None and args.fold is None:
        from model.export import export_config
        cfg = export_config(args.weights)  # the config the weights were exported with
    else:
        cfg = config_from_args(args)
    if args.segments < 1:
        raise UserError(f"--segments {args.segments} must be >= 1")
    if args.layers is not None and not 1 <= args.layers <= cfg.model.n_layers:
        raise UserError(f"--layers {args.layers} must be in 1..{cfg.model.n_layers} (the "
                        "config's n_layers)")
    try:
        if args.weights:
            qm = load_export(args.weights, cfg)
        else:
            from model.quantize import quantize_model
            log.info("building and quantizing a model with seed %d", args.seed)
            qm = quantize_model(cfg, seed=args.seed)
        report = run_stream(cfg, qm, args.segments, args.layers, seed=args.seed,
                            **_waves(args))
    except (ExportError, LayerCompileError) as e:
        raise UserError(str(e)) from None
    res = report_dict(report)
    if args.json:
        emit(res)
    else:
        print(f"{cfg.source}: {report.layers} layer(s) x {report.segments} segments, fold "
              f"{cfg.model.fold_factor}, weights {report.weights}")
        rows = [[s, c, m, "yes" if c == m else "NO"] for s, (c, m) in enumerate(
            zip(report.cycles_per_segment, report.model_cycles_per_segment, strict=True))]
        print(format_table(["segment", "RTL cycles", "model cycles", "equal"], rows))
        print(format_table(["quantity", "value"], [
            ["cycles (all segments)", report.cycles], ["preload cycles", report.preload_cycles],
            ["elements compared", report.compared], ["mismatches", report.mismatches],
            *([["first mismatch", str(report.first)]] if report.first else []),
            *[[f"peak SRAM {b}", v] for b, v in report.sram_bytes.items()],
            ["wall s", round(report.wall_s, 2)]]))
        for line in report.counter_mismatches:
            print(f"counter mismatch: {line}")
        if report.waves:
            print(f"waves: {report.waves}")
    ok = report.ok
    if not ok:
        print("foldaccel rtl layer: the RTL differs from the golden model or the timing model"
              + (f": {report.first}" if report.first else ""), file=sys.stderr)
    return 0 if ok else 1
