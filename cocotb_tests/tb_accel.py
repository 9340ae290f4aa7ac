"""Program-level cocotb tests of the accelerator (``sim.rtl.designs.accel_design``).

Per GEMM case: the compiler builds the program, the driver preloads the host model and
starts it, the monitor reads the output stream and the performance counters, and the
scoreboard compares element by element against two reference models -- the numpy golden
(``model.intops.gemm_i32`` + ``requantize``) and the ISA simulator -- and compares every RTL
counter with the timing model (``hw.timing.program_cycles``) and with the estimator users
run (``sim.perf.estimate.estimate_program``). Mismatches name the case,
the element, both values and the operands' seed.

Environment: FOLDACCEL_CONFIG (TOML of the config the design was built for),
FOLDACCEL_SEED, FOLDACCEL_SUITE ("small" or "default"), FOLDACCEL_RANDOM (random cases).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass

import cocotb
import numpy as np

from hw import isa
from hw.accel import ERR_ILLEGAL, ERR_WATCHDOG
from hw.compiler import GemmProgram, compile_gemm
from hw.timing import program_cycles
from hw.uarch import AccelParams
from model.config import config_from_dict
from model.intops import gemm_i32, requantize
from sim.isa_sim import simulate
from sim.perf.estimate import estimate_program
from sim.rtl.host import run_program
from sim.rtl.scoreboard import Scoreboard

HW = config_from_dict(tomllib.loads(os.environ.get("FOLDACCEL_CONFIG", ""))).hardware
P = AccelParams.from_hw(HW)
SEED = int(os.environ.get("FOLDACCEL_SEED", "1"))
SUITE = os.environ.get("FOLDACCEL_SUITE", "small")
N_RANDOM = int(os.environ.get("FOLDACCEL_RANDOM", "12"))


@dataclass(frozen=True)
class GemmCase:
    name: str
    M: int
    K: int
    N: int
    bias: bool = False
    requant: bool = False
    relu: bool = False
    data: str = "random"   # random | min | max | saturate
    seed: int = 0


def operands(case: GemmCase):
    """Seeded operands for ``case`` (A, B, bias, mult, shift)."""
    rng = np.random.default_rng(case.seed)
    M, K, N = case.M, case.K, case.N
    if case.data == "min":
        a, b = np.full((M, K), -128), np.full((K, N), -128)
    elif case.data == "max":
        a, b = np.full((M, K), -128), np.full((K, N), 127)
    else:
        a, b = rng.integers(-128, 128, (M, K)), rng.integers(-128, 128, (K, N))
    bias = mult = shift = None
    if case.bias:
        bound = min(2**30, 2**31 - 1 - K * 2**14)
        bias = rng.integers(-bound, bound, N, endpoint=True)
        if case.data in ("min", "max"):
            bias[::2] = bound
            bias[1::2] = -bound
    if case.requant:
        if case.data == "saturate":   # large gains: most outputs clip at -128 / 127
            mult, shift = rng.integers(16384, 32768, N), rng.integers(1, 9, N)
        else:                         # typical: m/2**s ~ 1 / (K * 2**7)
            mult = rng.integers(16384, 32768, N)
            shift = np.full(N, 14 + 7 + int(np.ceil(np.log2(max(K, 1)))) // 2)
            shift = np.clip(shift + rng.integers(-2, 3, N), 1, 47)
    return a, b, bias, mult, shift


def golden(case: GemmCase, a, b, bias, mult, shift) -> np.ndarray:
    c = gemm_i32(a, b, bias)
    return requantize(c, mult, shift, relu=case.relu) if case.requant else c


def compare_matrix(sb: Scoreboard, label: str, want: np.ndarray, got: np.ndarray,
                   inputs: str) -> None:
    """Element-by-element comparison (every element counted, mismatches named)."""
    if got.shape != want.shape:
        sb.compare(f"{label} shape", want.shape, got.shape, inputs)
        return
    for (i, j), w in np.ndenumerate(want):
        sb.compare(f"{label} C[{i},{j}]", int(w), int(got[i, j]), inputs)


def compare_counters(sb: Scoreboard, label: str, model: dict, rtl: dict,
                     source: str = "timing model") -> None:
    for name, value in model.items():
        sb.compare(f"{label} counter {name} ({source} vs RTL)", value, rtl[name])


async def check_program(dut, sb: Scoreboard, label: str, prog: GemmProgram, din: np.ndarray,
                        want: np.ndarray, inputs: str) -> dict:
    """Run one compiled program on ISA simulator and RTL; score both against ``want``."""
    sim = simulate(prog.instrs, P, din)
    compare_matrix(sb, f"{label} ISA-sim", want, prog.unpack_output(sim.dout), inputs)
    model = program_cycles(prog, P)
    rec = await run_program(dut, HW, prog.words(), din, 4 * model["total"] + 1000)
    assert rec.done and rec.error == 0, f"{label}: {rec.describe(prog.words())}"
    sb.compare(f"{label} output beats (RTL vs ISA-sim stream)", sim.dout.shape,
               rec.dout.shape, inputs)
    if rec.dout.shape == sim.dout.shape:
        sb.compare(f"{label} raw output stream bytes", True,
                   bool(np.array_equal(rec.dout, sim.dout)), inputs)
        compare_matrix(sb, f"{label} RTL", want, prog.unpack_output(rec.dout), inputs)
    compare_counters(sb, label, model, rec.counters)
    estimate = estimate_program(prog, HW)["rtl_counters"]
    compare_counters(sb, label, estimate, rec.counters, "estimator")
    return rec.counters


async def run_cases(dut, cases: list[GemmCase], name: str) -> Scoreboard:
    sb = Scoreboard(name, SEED)
    for case in cases:
        prog = compile_gemm(case.M, case.K, case.N, HW, bias=case.bias, requant=case.requant,
                            relu=case.relu)
        a, b, bias, mult, shift = operands(case)
        want = golden(case, a, b, bias, mult, shift)
        label = f"{case.name} {case.M}x{case.K}x{case.N}"
        cyc = await check_program(dut, sb, label, prog, prog.pack_inputs(a, b, bias, mult, shift),
                                  want, f"case seed {case.seed}")
        dut._log.info(f"{label}: {cyc['total']} cycles, plan {prog.plan}")
    return sb


def corner_cases() -> list[GemmCase]:
    R, C = P.rows, P.cols
    s = SEED * 1000
    big_k = 2 * max(P.act_depth, P.wgt_depth) + 37        # K chunked: bigger than ACT/WGT
    cases = [
        GemmCase("K=1", 2 * R + 1, 1, 2 * C + 1, seed=s + 1),
        GemmCase("M=1", 1, 37, 3 * C + 2, seed=s + 2),
        GemmCase("N=1", 3 * R + 1, 29, 1, seed=s + 3),
        GemmCase("M=N=K=1", 1, 1, 1, seed=s + 4),
        GemmCase("non-multiple", R + 1, 13, C + 1, bias=True, seed=s + 5),
        GemmCase("all -128", 2 * R + 3, 300, C + 2, data="min", seed=s + 6),
        GemmCase("all -128 x 127 + bias", R + 2, 200, 2 * C, bias=True, data="max",
                 seed=s + 7),
        GemmCase("all -128 requant", R, 64, C, bias=True, requant=True, data="min",
                 seed=s + 8),
        GemmCase("saturating requant", 2 * R + 1, 40, 2 * C + 1, bias=True, requant=True,
                 data="saturate", seed=s + 9),
        GemmCase("saturating requant+relu", 2 * R, 40, C + 1, requant=True, relu=True,
                 data="saturate", seed=s + 10),
        GemmCase("requant+relu", 3 * R + 2, 77, 2 * C + 2, bias=True, requant=True, relu=True,
                 seed=s + 11),
        GemmCase("K bigger than ACT/WGT", R + 1, big_k, C + 2, bias=True, requant=True,
                 seed=s + 12),
        GemmCase("K bigger than ACT/WGT, int32 out", 2 * R, big_k, 2 * C - 1, seed=s + 13),
    ]
    if SUITE == "small":  # A, B and C each several times larger than their banks
        cases.append(GemmCase("A, B, C bigger than SRAM", 11 * R + 3, 300, 9 * C + 2,
                              bias=True, requant=True, seed=s + 14))
        cases.append(GemmCase("A, B bigger than SRAM, int32 out", 9 * R, 200, 7 * C + 1,
                              seed=s + 15))
    else:
        cases.append(GemmCase("B bigger than WGT", 48, 600, 200, bias=True, requant=True,
                              seed=s + 14))
        cases.append(GemmCase("acceptance 37x100x23", 37, 100, 23, seed=s + 15))
        cases.append(GemmCase("acceptance requant", 37, 100, 23, bias=True, requant=True,
                              relu=True, seed=s + 16))
    return cases


def random_cases(n: int) -> list[GemmCase]:
    rng = np.random.default_rng(SEED)
    hi = (40, 300, 30) if SUITE == "small" else (100, 400, 100)
    cases = []
    for t in range(n):
        M, K, N = (int(rng.integers(1, h + 1)) for h in hi)
        requant = bool(rng.random() < 0.5)
        cases.append(GemmCase(f"random#{t}", M, K, N, bias=bool(rng.random() < 0.5),
                              requant=requant, relu=requant and bool(rng.random() < 0.5),
                              seed=SEED * 1000 + 100 + t))
    return cases


@cocotb.test()
async def corners(dut):
    """K=1, M or N = 1, non-multiples, all -128, saturation, operands bigger than SRAM."""
    sb = await run_cases(dut, corner_cases(), f"accel.corners[{SUITE}]")
    sb.check(min_compared=1000)


@cocotb.test()
async def random_shapes(dut):
    """Seeded random shapes with random bias / requant / ReLU."""
    sb = await run_cases(dut, random_cases(N_RANDOM), f"accel.random[{SUITE}]")
    sb.check(min_compared=N_RANDOM)


def _tiny_program() -> tuple[GemmCase, GemmProgram]:
    case = GemmCase("tiny", P.rows + 1, 9, P.cols + 1, bias=True, requant=True, seed=SEED + 7)
    return case, compile_gemm(case.M, case.K, case.N, HW, bias=True, requant=True)


@cocotb.test()
async def malformed_instructions(dut):
    """Each malformed word stops the run with ERR_ILLEGAL at its index, before it executes;
    the Python decoder/checker rejects the same word."""
    case, prog = _tiny_program()
    a, b, bias, mult, shift = operands(case)
    din = prog.pack_inputs(a, b, bias, mult, shift)
    words = prog.words()
    mm = next(n for n, ins in enumerate(prog.instrs) if ins.op == "MATMUL")
    ld = next(n for n, ins in enumerate(prog.instrs) if ins.op == "LOAD")
    st = next(n for n, ins in enumerate(prog.instrs) if ins.op == "STORE")

    def field(word: int, op: str, name: str, value: int) -> int:
        off, bits = isa.field_offsets(op)[name]
        shift_ = isa.HEADER_BITS + off
        return (word & ~(((1 << bits) - 1) << shift_)) | (value << shift_)

    bad = [
        ("opcode 0 (all-zero word)", mm, 0),
        ("undefined opcode 20", mm, (words[mm] & ~0x1F) | 20),
        ("reserved header bit 5", mm, words[mm] | (1 << 5)),
        ("reserved header bit 7", mm, words[mm] | (1 << 7)),
        ("payload bit past the fields", st, words[st] | (1 << 120)),
        ("LOAD bank 7", ld, field(words[ld], "LOAD", "bank", 7)),
        ("LOAD past the bank end", ld, field(words[ld], "LOAD", "addr", P.act_depth - 1)),
        ("MATMUL k=0", mm, field(words[mm], "MATMUL", "k", 0)),
        ("MATMUL mode 3", mm, field(words[mm], "MATMUL", "mode", 3)),
        ("MATMUL acc tile past the end", mm,
         field(words[mm], "MATMUL", "acc", P.acc_depth - P.rows + 1)),
        ("STORE count=0", st, field(words[st], "STORE", "count", 0)),
        ("CONFIG for another array", 0, field(words[0], "CONFIG", "rows", P.rows + 1)),
    ]
    sb = Scoreboard("accel.malformed", SEED)
    for what, pc, word in bad:
        prog_words = list(words)
        prog_words[pc] = word
        try:
            isa.check(isa.decode(word), P, pc)
            python_rejects = False
        except isa.IsaError:
            python_rejects = True
        sb.compare(f"{what}: Python decoder/checker rejects it", True, python_rejects)
        rec = await run_program(dut, HW, prog_words, din, 20000)
        sb.compare(f"{what}: RTL error code", ERR_ILLEGAL, rec.error)
        sb.compare(f"{what}: RTL error names instruction", pc, rec.err_pc)
        sb.compare(f"{what}: not done", False, rec.done)
        stored = sum(ins["count"] for ins in prog.instrs[:pc] if ins.op == "STORE")
        sb.compare(f"{what}: only earlier STOREs produced output", True,
                   len(rec.dout) <= stored * P.beats(2))
        message = rec.describe(prog_words)
        sb.compare(f"{what}: message names the instruction", True,
                   f"illegal instruction #{pc} " in message)
        dut._log.info(f"{what}: {message}")
    sb.check(min_compared=5 * len(bad))


@cocotb.test()
async def watchdog(dut):
    """A program starved of input data stops at its cycle budget naming the busy LOAD; a
    budget equal to the timing model's total passes, one cycle less trips."""
    case, prog = _tiny_program()
    a, b, bias, mult, shift = operands(case)
    din = prog.pack_inputs(a, b, bias, mult, shift)
    want = golden(case, a, b, bias, mult, shift)
    sb = Scoreboard("accel.watchdog", SEED)
    # 1. data stream runs dry: the second LOAD never finishes
    first_load = next(ins for ins in prog.instrs if ins.op == "LOAD")
    short = din[:first_load["count"] * P.beats(first_load["bank"]) + 1]
    budget = prog.plan["budget"]
    rec = await run_program(dut, HW, prog.words(), short, 4 * budget)
    sb.compare("starved: error", ERR_WATCHDOG, rec.error)
    sb.compare("starved: stopped at the budget", budget, rec.counters["total"])
    sb.compare("starved: LOAD busy", True, "LOAD" in rec.busy)
    stuck = rec.unit_pc["LOAD"]
    sb.compare("starved: LOAD executing the second LOAD", 1,
               sum(1 for ins in prog.instrs[:stuck + 1] if ins.op == "LOAD") - 1)
    message = rec.describe(prog.words())
    sb.compare("starved: message names unit and instruction", True,
               f"LOAD executing #{stuck} LOAD" in message
               and "last instruction started: #" in message)
    dut._log.info(message)
    # 2. exact budget: the timing model's total passes, one less trips
    total = program_cycles(prog, P)["total"]
    for budget, ok in ((total, True), (total - 1, False)):
        words = prog.words()
        words[0] = isa.config(budget, P.rows, P.cols).encode()
        rec = await run_program(dut, HW, words, din, 4 * total)
        sb.compare(f"budget {budget} (model total {total}): done", ok, rec.done)
        sb.compare(f"budget {budget}: error", 0 if ok else ERR_WATCHDOG, rec.error)
        if ok:
            compare_matrix(sb, "exact budget RTL", want, prog.unpack_output(rec.dout),
                           f"case seed {case.seed}")
        else:
            sb.compare("tripped at budget", budget, rec.counters["total"])
    sb.check(min_compared=10)


@cocotb.test(skip=SUITE != "small")
async def timing_probes(dut):
    """Hand-timed programs (cocotb_tests/timing_probes.py): RTL counters equal the cycle
    counts worked out by hand from docs/ISA.md."""
    from cocotb_tests.timing_probes import HOST_BYTES, PROBES

    assert (P.rows, P.cols, P.host_bytes) == (4, 3, HOST_BYTES)
    sb = Scoreboard("accel.timing_probes", SEED)
    for probe in PROBES:
        words = [ins.encode() for ins in probe.program]
        rec = await run_program(dut, HW, words, probe.din(), 10000)
        assert rec.done, f"{probe.name}: {rec.describe(words)}"
        compare_counters(sb, probe.name, probe.expected, rec.counters)
    sb.check(min_compared=7 * len(PROBES))
