"""cocotb testbenches of the VADD and VSQUASH engines (hw/vector/elementwise.py).

``add_cases`` (AddEngine harness): seeded random residual adds of int16 / int8 operands with
parameters from ``intops.quantize_add_multipliers`` and raw random ``(m_a, m_b, s)``, cases
that saturate to +32767 and -32768, ReLU on and off, in place (``dst == a``, ``dst == b``)
and disjoint destinations. ``squash_cases`` (SquashEngine harness): mode 0 (requantize +
clamp) with all 256 int8 inputs, bounds hit on both sides, rounding ties (``x*m`` an odd
multiple of ``2**(s-1)``); mode 1 with all 256 ELUT entries looked up (tanh and random
tables). The reference is ``model.intops`` (``add_requant_i16``, ``requantize`` +
``clamp_i8``, ``lut_i8``); every word of the touched VMEM span (destination and untouched
neighbours) and the latency (``hw.vector.latency_arith``) are scoreboarded. Environment:
FOLDACCEL_SEED, FOLDACCEL_COLS, FOLDACCEL_ROWS, FOLDACCEL_CASES.
"""

from __future__ import annotations

from types import SimpleNamespace

import cocotb
import numpy as np

from cocotb_tests.engine_harness import (
    DEPTHS,
    EngineDriver,
    int_to_lanes,
    lanes_to_int,
    pack_args,
    testbench_params,
)
from hw.vector.formats import pack_param_word
from hw.vector.latency_arith import vadd_latency, vsquash_latency
from model import intops
from sim.rtl.scoreboard import Scoreboard

SEED, C, R, CASES = testbench_params(cols=4, rows=4, cases=30)
SPAN = 256          # VMEM words preloaded and checked per case
PARAM = 5           # PMEM word of the parameters


def load_span(drv: EngineDriver, words: np.ndarray) -> None:
    for i, w in enumerate(words):
        drv.write("vmem", i, lanes_to_int(w, 16))


def check_span(drv: EngineDriver, sb: Scoreboard, want: np.ndarray, where: str) -> None:
    for i in range(len(want)):
        sb.compare(f"{where} VMEM[{i}]", [int(v) for v in want[i]],
                   int_to_lanes(drv.read("vmem", i), 16, C))


def _add_params(rng, kind: str) -> tuple[int, int, int]:
    if kind == "quantized":
        sa, sb, so = (float(v) for v in rng.uniform(0.05, 4.0, 3))
        return intops.quantize_add_multipliers(sa, sb, so)
    if kind == "big":                # gain > 1: saturates
        return int(rng.integers(2**14, 2**15)), int(rng.integers(2**14, 2**15)), \
            int(rng.integers(1, 13))
    return int(rng.integers(0, 2**15)), int(rng.integers(0, 2**15)), int(rng.integers(1, 48))


@cocotb.test()
async def add_cases(dut):
    rng = np.random.default_rng(SEED)
    drv = EngineDriver(dut)
    await drv.reset()
    sb = Scoreboard("vadd.cases", SEED)
    kinds = ["quantized", "big", "raw"]
    seen = {"sat+": 0, "sat-": 0, "relu0": 0, "in place": 0}
    for case in range(CASES):
        kind = kinds[case % 3]
        count = int(rng.integers(1, 41)) if case % 5 else int(rng.integers(1, 4))
        vmem = rng.integers(-2**15, 2**15, (SPAN, C))
        if case % 4 == 1:            # extreme operands: saturate both ways
            vmem = rng.choice([-2**15, 2**15 - 1, -2**15 + 1, 2**15 - 2], (SPAN, C))
        a = int(rng.integers(0, 80))
        b = int(rng.integers(90, 170))
        if case % 6 == 2:            # int8 branch operand (sign-extended)
            vmem[b:b + count] = rng.integers(-128, 128, (count, C))
        place = case % 3
        dst = a if place == 0 else b if place == 1 else int(rng.integers(180, SPAN - count))
        m_a, m_b, s = _add_params(rng, kind)
        relu = int(rng.integers(0, 2))
        load_span(drv, vmem)
        drv.write("pmem", PARAM, lanes_to_int(
            pack_param_word("VADD", C, m_a=m_a, m_b=m_b, s=s, relu=relu), 64))
        want = vmem.copy()
        want[dst:dst + count] = intops.add_requant_i16(vmem[a:a + count], vmem[b:b + count],
                                                       m_a, m_b, s, bool(relu))
        exact = (vmem[a:a + count] * m_a + vmem[b:b + count] * m_b + (1 << (s - 1))) >> s
        seen["sat+"] += int((exact > 2**15 - 1).sum())
        seen["sat-"] += int((exact < -2**15).sum()) if not relu else 0
        seen["relu0"] += int((exact < 0).sum()) if relu else 0
        seen["in place"] += place < 2
        args = SimpleNamespace(a=a, b=b, dst=dst, count=count, param=PARAM)
        cycles = await drv.run(pack_args("VADD", **vars(args)))
        where = f"case {case} ({vars(args)} m_a={m_a} m_b={m_b} s={s} relu={relu})"
        sb.compare(f"{where} latency", vadd_latency(args, SimpleNamespace(cols=C, rows=R)),
                   cycles)
        check_span(drv, sb, want, where)
    # a zero-count VADD is a no-op of latency 1
    cycles = await drv.run(pack_args("VADD", a=0, b=100, dst=200, count=0, param=PARAM))
    sb.compare("count 0 latency", vadd_latency(SimpleNamespace(count=0), None), cycles)
    check_span(drv, sb, want, "after count 0")
    assert DEPTHS["vmem"] >= SPAN
    assert all(seen.values()), f"coverage hole: {seen}"
    dut._log.info("VADD coverage: %s", seen)
    sb.check(min_compared=(CASES + 1) * (SPAN + 1))


def _squash_mode0_cases(rng):
    """(m, s, lo, hi) tuples: plain, tight bounds (both hit), rounding ties, gains > 1."""
    yield 1, 1, -128, 127             # x/2 rounded half up: ties at every odd x
    yield 3, 2, -20, 30               # 3x/4: ties where 3x = 2 mod 4
    yield 2**14, 15, -128, 127        # x/2 again through a 15-bit multiplier
    yield 5, 3, -128, 127
    yield 2**15 - 1, 14, -100, 90     # gain ~2: saturation and clamps
    for _ in range(6):
        lo = int(rng.integers(-128, 60))
        hi = int(rng.integers(lo, 128))
        yield int(rng.integers(0, 2**15)), int(rng.integers(1, 20)), lo, hi
    m, s = intops.quantize_multiplier(0.37)
    yield m, s, -64, 63


@cocotb.test()
async def squash_cases(dut):
    rng = np.random.default_rng(SEED + 1)
    drv = EngineDriver(dut)
    await drv.reset()
    sb = Scoreboard("vsquash.cases", SEED)
    hw = SimpleNamespace(cols=C, rows=R)
    n_all = 256 // C                  # words holding every int8 value once
    everything = (np.arange(256) - 128).reshape(n_all, C)
    cases = [("clamp", p) for p in _squash_mode0_cases(rng)]
    tables = [intops.make_tanh_lut(0.03, 1 / 127), intops.make_tanh_lut(0.01, 0.5 / 127),
              rng.integers(-128, 128, 256)]
    cases += [("lut", t) for t in tables]
    cases += [("lut" if k % 2 else "clamp", None) for k in range(max(0, CASES - len(cases)))]
    seen = {"lo": 0, "hi": 0, "tie": 0, "lut entries": set()}
    for case, (mode, prm) in enumerate(cases):
        vmem = rng.integers(-2**15, 2**15, (SPAN, C))
        if prm is None:               # random short case
            count = int(rng.integers(1, 30))
            x = rng.integers(-128, 128, (count, C))
            if mode == "clamp":
                lo = int(rng.integers(-128, 128))
                prm = (int(rng.integers(0, 2**15)), int(rng.integers(1, 48)), lo,
                       int(rng.integers(lo, 128)))
            else:
                prm = rng.integers(-128, 128, 256)
        else:                         # all 256 int8 values, shuffled, plus a random tail
            tail = rng.integers(-128, 128, (int(rng.integers(0, 5)), C))
            x = np.concatenate([rng.permutation(everything.reshape(-1)).reshape(n_all, C),
                                tail])
            count = len(x)
        src = int(rng.integers(0, 60))
        dst = src if case % 3 == 0 else int(rng.integers(140, SPAN - count))
        vmem[src:src + count] = x
        if mode == "clamp":
            m, s, lo, hi = prm
            word = pack_param_word("VSQUASH", C, mode=0, m=m, s=s, lo=lo, hi=hi)
            y = intops.clamp_i8(intops.requantize(x, m, s), lo, hi)
            label = f"mode 0 m={m} s={s} lo={lo} hi={hi}"
            q = intops.requantize(x, m, s)
            seen["lo"] += int((q < lo).sum())
            seen["hi"] += int((q > hi).sum())
            seen["tie"] += int(((x * m) % (1 << s) == 1 << (s - 1)).sum())
            table = rng.integers(-128, 128, 256)      # ELUT holds garbage: must be ignored
        else:
            table = np.asarray(prm)
            word = pack_param_word("VSQUASH", C, mode=1, m=int(rng.integers(0, 2**15)),
                                   s=int(rng.integers(1, 48)))
            y = intops.lut_i8(x, table)
            label = "mode 1"
            seen["lut entries"] |= set((x + 128).reshape(-1).tolist())
        for k in range(256):
            drv.write("elut", k, int(table[k]) & 0xFFFF)
        load_span(drv, vmem)
        drv.write("pmem", PARAM, lanes_to_int(word, 64))
        want = vmem.copy()
        want[dst:dst + count] = y
        args = SimpleNamespace(src=src, dst=dst, count=count, param=PARAM)
        cycles = await drv.run(pack_args("VSQUASH", **vars(args)))
        where = f"case {case} ({vars(args)} {label})"
        sb.compare(f"{where} latency", vsquash_latency(args, hw), cycles)
        check_span(drv, sb, want, where)
    cycles = await drv.run(pack_args("VSQUASH", src=0, dst=200, count=0, param=PARAM))
    sb.compare("count 0 latency", vsquash_latency(SimpleNamespace(count=0), hw), cycles)
    check_span(drv, sb, want, "after count 0")
    assert seen["lo"] and seen["hi"] and seen["tie"], f"coverage hole: {seen}"
    assert seen["lut entries"] == set(range(256)), "not every ELUT entry was looked up"
    dut._log.info("VSQUASH coverage: lo %d hi %d ties %d", seen["lo"], seen["hi"], seen["tie"])
    sb.check(min_compared=(len(cases) + 1) * (SPAN + 1))
