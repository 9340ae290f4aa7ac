"""cocotb testbench of hw.requant.Requantizer against model.intops.requantize (int8) and
model.intops.requantize_i16 (int16, ``out16``).

Parameters (environment): FOLDACCEL_SEED, FOLDACCEL_LANES, FOLDACCEL_VECTORS. One vector
(all lanes) per cycle; the driver applies it, the monitor samples ``y`` one cycle later, the
reference is the numerics engineer's ``requantize`` (per-column m, s broadcast along lanes).
"""

from __future__ import annotations

import os

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge

from cocotb_tests.tb_array import pack, unpack_signed
from model.intops import I32_MAX, I32_MIN, M_MAX, S_MAX, S_MIN, requantize, requantize_i16
from sim.rtl.scoreboard import Scoreboard

SEED = int(os.environ.get("FOLDACCEL_SEED", "1"))
LANES = int(os.environ.get("FOLDACCEL_LANES", "3"))
VECTORS = int(os.environ.get("FOLDACCEL_VECTORS", "3000"))


def random_vectors(rng: np.random.Generator, n: int):
    """Mixed magnitudes: full-range int32, small values near rounding ties, typical scales."""
    acc = np.where(rng.random((n, LANES)) < 0.5,
                   rng.integers(I32_MIN, I32_MAX, (n, LANES), endpoint=True),
                   rng.integers(-(2**20), 2**20, (n, LANES)))
    m = rng.integers(0, M_MAX, (n, LANES), endpoint=True)
    s = np.where(rng.random((n, LANES)) < 0.5, rng.integers(S_MIN, S_MAX, (n, LANES),
                                                            endpoint=True),
                 rng.integers(14, 32, (n, LANES)))
    relu = rng.random(n) < 0.5
    out16 = rng.random(n) < 0.5
    return acc, m, s, relu, out16


def corner_vectors():
    """Extremes of every field, rounding ties in both signs, saturation both ways."""
    rows = []
    extremes = [I32_MIN, I32_MIN + 1, -1, 0, 1, I32_MAX]
    for a in extremes:
        for mm in (0, 1, 16384, M_MAX):
            for ss in (S_MIN, 2, 15, 31, 46, S_MAX):
                for r in (False, True):
                    for o in (False, True):
                        rows.append(([a] * LANES, [mm] * LANES, [ss] * LANES, r, o))
    for ss in (1, 2, 8, 20):  # exact ties: acc*m = (2k+1) * 2**(s-1)
        for k in (-3, -2, -1, 0, 1, 2):
            for o in (False, True):
                rows.append(([(2 * k + 1) << (ss - 1)] * LANES, [1] * LANES, [ss] * LANES,
                             False, o))
    acc, m, s, relu, out16 = (np.array(x) for x in zip(*rows, strict=True))
    return (acc.astype(np.int64), m.astype(np.int64), s.astype(np.int64), relu.astype(bool),
            out16.astype(bool))


async def run_vectors(dut, acc, m, s, relu, out16, name: str) -> Scoreboard:
    cocotb.start_soon(Clock(dut.clk, 2, unit="ns").start())
    dut.rst.value = 1
    dut.valid.value = 0
    await FallingEdge(dut.clk)
    dut.rst.value = 0
    got = []
    n = len(acc)
    for t in range(n + 1):
        await FallingEdge(dut.clk)
        if t:
            assert int(dut.y_valid.value) == 1, f"y_valid low one cycle after vector {t - 1}"
            got.append(unpack_signed(int(dut.y.value), 16, LANES))
        if t < n:
            dut.acc.value = pack(acc[t], 32)
            dut.m.value = pack(m[t], 15)
            dut.s.value = pack(s[t], 6)
            dut.relu.value = int(relu[t])
            dut.out16.value = int(out16[t])
            dut.valid.value = 1
        else:
            dut.valid.value = 0
    await FallingEdge(dut.clk)
    assert int(dut.y_valid.value) == 0, "y_valid high without an input vector"
    sb = Scoreboard(name, SEED)
    for t in range(n):
        fn = requantize_i16 if out16[t] else requantize
        want = fn(acc[t], m[t], s[t], relu=bool(relu[t]))
        for j in range(LANES):
            sb.compare(f"vector {t} lane {j}", int(want[j]), got[t][j],
                       f"acc={acc[t][j]} m={m[t][j]} s={s[t][j]} relu={bool(relu[t])} "
                       f"out16={bool(out16[t])}")
    return sb


@cocotb.test()
async def random_params(dut):
    """Seeded random accumulators, multipliers, shifts and ReLU flags."""
    acc, m, s, relu, out16 = random_vectors(np.random.default_rng(SEED), VECTORS)
    sb = await run_vectors(dut, acc, m, s, relu, out16, "requant.random")
    sb.check(min_compared=VECTORS * LANES)


@cocotb.test()
async def corners(dut):
    """int32 extremes x m extremes x s extremes x ReLU; exact rounding ties."""
    acc, m, s, relu, out16 = corner_vectors()
    sb = await run_vectors(dut, acc, m, s, relu, out16, "requant.corners")
    sb.check(min_compared=len(acc) * LANES)
