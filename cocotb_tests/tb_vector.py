"""Program-level cocotb tests of the vector unit, the mover and REQUANT-to-VMEM on the whole
accelerator (``sim.rtl.designs.accel_design``).

Each program (``cocotb_tests/vector_cases.py``) moves its inputs through the host interface,
runs on the RTL, and the scoreboard compares: every stored element with ``model.intops``
applied to the original tensors (the reference), the raw output stream byte for byte with
the ISA simulator's, and every RTL counter with the timing model and the estimator. Random
mixed programs (old and new opcodes, random orders, dependencies from the tracker) compare
RTL and ISA simulator streams and the counters. A program missing a shared-port dependency
stops with ERR_PORT.

Environment: FOLDACCEL_CONFIG, FOLDACCEL_SEED, FOLDACCEL_SUITE ("small" or "default"),
FOLDACCEL_RANDOM (random programs).
"""

from __future__ import annotations

import os
import tomllib

import cocotb
import numpy as np

from cocotb_tests import vector_cases as vc
from hw import isa
from hw.accel import ERR_PORT
from hw.program import Program
from hw.timing import program_cycles
from hw.uarch import AccelParams
from model.config import config_from_dict
from sim.isa_sim import simulate
from sim.perf.estimate import estimate_program
from sim.rtl.host import run_program
from sim.rtl.scoreboard import Scoreboard

HW = config_from_dict(tomllib.loads(os.environ.get("FOLDACCEL_CONFIG", ""))).hardware
P = AccelParams.from_hw(HW)
SEED = int(os.environ.get("FOLDACCEL_SEED", "1"))
SUITE = os.environ.get("FOLDACCEL_SUITE", "small")
N_RANDOM = int(os.environ.get("FOLDACCEL_RANDOM", "6"))


async def check_program(dut, sb: Scoreboard, label: str, prog: Program,
                        want: dict | None = None) -> dict:
    """Run ``prog`` on the ISA simulator and the RTL; score outputs and counters."""
    sim = simulate(prog.instrs, P, prog.din)
    model = program_cycles(prog.instrs, P)
    rec = await run_program(dut, HW, prog.words(), prog.din, 4 * model["total"] + 2000)
    assert rec.done and rec.error == 0, f"{label}: {rec.describe(prog.words())}"
    sb.compare(f"{label} output beats (RTL vs ISA-sim)", sim.dout.shape, rec.dout.shape)
    if rec.dout.shape == sim.dout.shape:
        diff = np.flatnonzero(np.any(rec.dout != sim.dout, axis=1))
        sb.compare(f"{label} raw output stream (first differing beat)", -1,
                   int(diff[0]) if len(diff) else -1)
        got = prog.unpack(rec.dout)
        for tag, (expected, decode) in (want or {}).items():
            values = decode(got[tag])
            if values.shape != expected.shape:
                sb.compare(f"{label} {tag} shape", expected.shape, values.shape)
                continue
            for idx in zip(*np.nonzero(values != expected), strict=True):
                sb.compare(f"{label} {tag}{list(map(int, idx))}", int(expected[idx]),
                           int(values[idx]), f"seed {SEED}")
            sb.compared += values.size - int(np.count_nonzero(values != expected))
    for name, value in model.items():
        sb.compare(f"{label} counter {name} (timing model vs RTL)", value, rec.counters[name])
    est = estimate_program(prog.instrs, HW)["rtl_counters"]
    for name, value in est.items():
        sb.compare(f"{label} counter {name} (estimator vs RTL)", value, rec.counters[name])
    return rec.counters


def _widths() -> list[int]:
    return [64, 128, 512] if SUITE == "default" else [P.cols, 4 * P.cols, 10 * P.cols]


@cocotb.test()
async def layernorm(dut):
    """LayerNorm of int16 rows: random, zero-variance, extreme; int8 and int16 out;
    block-padded rows with garbage in the padding lanes."""
    rng = np.random.default_rng(SEED)
    sb = Scoreboard(f"vector.layernorm[{SUITE}]", SEED)
    C = P.cols
    for d in _widths():
        for kind in ("random", "flat", "extreme"):
            for out16 in (False, True):
                case = vc.layernorm_case(P, rng, 3 if d < 512 else 2, d, out16, kind)
                await check_program(dut, sb, case.name, case.program, case.want)
    # block-padded rows (fold blocks that are not a whole number of words)
    for d, blocks in ((2 * C + 2, 2), (3 * C + 1, 1), (4 * (C // 2 + 1), 4)):
        case = vc.layernorm_case(P, rng, 3, d, bool(blocks % 2), "random", blocks)
        await check_program(dut, sb, case.name, case.program, case.want)
    sb.check(min_compared=1000)


@cocotb.test()
async def softmax(dut):
    """Softmax with masks: equal / dominant / extreme scores, one column left, mixed masks,
    widths not multiples of the lanes, long rows, several exp scales."""
    rng = np.random.default_rng(SEED + 1)
    C = P.cols
    sb = Scoreboard(f"vector.softmax[{SUITE}]", SEED)
    cases = [vc.softmax_case(P, rng, 5, 2 * C + 1, kind) for kind in
             ("random", "equal", "dominant", "extreme")]
    cases += [vc.softmax_case(P, rng, 4, 7, mrow=0, mcols=6),
              vc.softmax_case(P, rng, 6, 13, mrow=4, mcols=5),
              vc.softmax_case(P, rng, 3, 1),
              vc.softmax_case(P, rng, 2, 200, scale=0.01),
              vc.softmax_case(P, rng, 3, 3 * C, scale=0.3)]
    for case in cases:
        await check_program(dut, sb, case.name, case.program, case.want)
    sb.check(min_compared=500)


@cocotb.test()
async def elementwise(dut):
    """Residual adds (random, saturating, ReLU), squash (clamp at both bounds, every tanh
    table entry), column sums (mean pool, int16 sums + requantize, zero-point bias)."""
    rng = np.random.default_rng(SEED + 2)
    C = P.cols
    sb = Scoreboard(f"vector.elementwise[{SUITE}]", SEED)
    cases = [vc.add_case(P, rng, 3, kind, relu) for kind in ("random", "saturate")
             for relu in (False, True)]
    cases += [vc.squash_case(P, rng, mode) for mode in ("clamp", "tanh")]
    cases += [vc.colsum_case(P, rng, kind, rows, 2 * C + 1) for kind in
              ("mean", "sum16", "zero_point") for rows in (1, 4, 7)]
    for case in cases:
        await check_program(dut, sb, case.name, case.program, case.want)
    sb.check(min_compared=300)


@cocotb.test()
async def movement(dut):
    """GEMM results moved on chip: REQUANT into VMEM (int8/int16, strided), then as the next
    GEMM's A operand, as K^T and as V in WGT, concatenated along tokens, folded rows."""
    rng = np.random.default_rng(SEED + 3)
    sb = Scoreboard(f"vector.movement[{SUITE}]", SEED)
    cases = [vc.requant_vmem_case(P, rng, out16, d) for out16 in (False, True)
             for d in (1, 3)]
    cases += [vc.chain_case(P, rng, kind) for kind in ("A", "KT", "V", "concat", "fold")]
    for case in cases:
        await check_program(dut, sb, case.name, case.program, case.want)
    sb.check(min_compared=100)


@cocotb.test()
async def random_programs(dut):
    """Random valid programs mixing every unit: RTL == ISA simulator, counters == model."""
    sb = Scoreboard(f"vector.random[{SUITE}]", SEED)
    for n in range(N_RANDOM):
        prog = vc.random_program(P, np.random.default_rng(SEED * 100 + n), 40)
        await check_program(dut, sb, f"random#{n}", prog)
    sb.check(min_compared=N_RANDOM * 10)


@cocotb.test()
async def port_conflict(dut):
    """Two units on the VMEM read port in the same cycle (a dependency left out) stop the run
    with ERR_PORT; the same program with the tracker's dependencies runs."""
    from hw.program import ProgramBuilder
    from hw.uarch import PMEM, VMEM
    from hw.vector import formats

    C = P.cols
    b = ProgramBuilder(P)
    b.load_vmem_rows(0, np.zeros((1, 8 * C), np.int64))
    b.load(PMEM, 0, formats.pack_param_word("VSQUASH", C, m=1, s=1, lo=-128, hi=127)
           .astype("<u8").view(np.uint8)[None])
    b.emit(isa.Instr("VSQUASH", {"src": 0, "dst": 20, "count": 8, "param": 0}))
    b.store(VMEM, 0, 8, "x")
    good = b.finish()
    sb = Scoreboard("vector.port_conflict", SEED)
    await check_program(dut, sb, "with dependencies", good)
    pc = next(n for n, ins in enumerate(good.instrs) if ins.op == "STORE")
    vec = isa.UNITS.index("VECTOR")
    assert good.instrs[pc].deps[vec] != 0
    bad = list(good.instrs)
    bad[pc] = good.instrs[pc].with_deps(tuple(0 if u == vec else d
                                              for u, d in enumerate(good.instrs[pc].deps)))
    words = isa.encode_program(bad)
    rec = await run_program(dut, HW, words, good.din, 20000)
    sb.compare("missing port dependency: error code", ERR_PORT, rec.error)
    sb.compare("missing port dependency: not done", False, rec.done)
    dut._log.info(rec.describe(words))
    sb.check(min_compared=3)
