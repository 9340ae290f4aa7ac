"""cocotb testbench of the VLN engine (hw/vector/layernorm.py) in the engine harness.

Seeded LayerNorms of int16 rows against ``model.intops.layernorm_i16``: widths ``D = words *
cols`` from FOLDACCEL_WORDS (the ``cols = 16`` run covers D = 64, 128 and 512), 1..6 rows per
instruction, both ``out16`` settings, gamma/beta/m/s from ``intops.quantize_layernorm`` of
random float parameters (and raw random ``m``/``s``), ``eps`` from
``intops.layernorm_eps_int`` and up to ``2**60 - 1``. Special rows mixed into every case:
zero variance (constant, all -32768: ``V = eps``, with ``eps = 0`` ``V = 0``), alternating
+-32767, one-hot (+32767 and -32768). In-place (``dst == src``) and disjoint destinations.
The rsqrt table is preloaded into the RLUT memory from ``intops.RSQRT_LUT``. Every word of
the destination (and of the source when disjoint) and the latency
(``latency_arith.vln_latency``) are scoreboarded. Environment: FOLDACCEL_SEED,
FOLDACCEL_COLS, FOLDACCEL_ROWS, FOLDACCEL_CASES, FOLDACCEL_WORDS (comma-separated list).
"""

from __future__ import annotations

import os
from types import SimpleNamespace

import cocotb
import numpy as np

from cocotb_tests.engine_harness import (
    DEPTHS,
    EngineDriver,
    int_to_lanes,
    lanes_to_int,
    pack_args,
)
from hw.vector.formats import pack_ln_features, pack_param_word, vmem_rows
from hw.vector.latency_arith import vln_latency
from model import intops
from sim.rtl.scoreboard import Scoreboard

SEED = int(os.environ.get("FOLDACCEL_SEED", "1"))
C = int(os.environ.get("FOLDACCEL_COLS", "4"))
R = int(os.environ.get("FOLDACCEL_ROWS", "4"))
CASES = int(os.environ.get("FOLDACCEL_CASES", "20"))
WORDS = [int(w) for w in os.environ.get("FOLDACCEL_WORDS", "1,2,3,4,5,8").split(",")]
PARAM = 2


def special_row(kind: str, d: int, rng) -> np.ndarray:
    if kind == "const":
        return np.full(d, int(rng.integers(-2**15, 2**15)))
    if kind == "min":
        return np.full(d, -2**15)
    if kind == "alt":
        return np.where(np.arange(d) % 2 == 0, 2**15 - 1, -(2**15 - 1))
    if kind == "onehot+":
        row = np.zeros(d, np.int64)
        row[int(rng.integers(0, d))] = 2**15 - 1
        return row
    if kind == "onehot-":
        row = np.full(d, int(rng.integers(-5, 6)))
        row[int(rng.integers(0, d))] = -2**15
        return row
    if kind == "small":                       # tiny variance: V = D - 1 (+ eps), k < 0
        row = np.full(d, int(rng.integers(-2**15, 2**15 - 1)))
        row[int(rng.integers(0, d))] += 1
        return row
    scale = 2.0 ** float(rng.uniform(2, 14))
    return np.clip(np.round(rng.normal(0, scale, d) + rng.normal(0, scale)), -2**15, 2**15 - 1)


KINDS = ["const", "min", "alt", "onehot+", "onehot-", "small"]


def ln_params(rng, d: int, out16: int, case: int):
    gamma = rng.normal(1.0, 0.3, d) * (1 if case % 4 else rng.uniform(0.01, 3))
    beta = rng.normal(0.0, 0.2, d)
    out_scale = (float(rng.uniform(2, 6)) / 127) if not out16 else \
        (float(rng.uniform(4, 40)) / 32767)
    gq, bq, m, s = intops.quantize_layernorm(gamma, beta, out_scale)
    if case % 5 == 3:                         # raw random requantization
        m, s = int(rng.integers(0, 2**15)), int(rng.integers(1, 48))
    if case % 6 == 5:                         # raw random int8 gamma, beta up to 2**30
        gq = rng.integers(-128, 128, d)
        bq = rng.integers(-2**30, 2**30, d)
    in_scale = 2.0 ** -float(rng.uniform(4, 14))
    choice = case % 4
    eps = 0 if choice == 0 else intops.layernorm_eps_int(1e-5, in_scale, d) if choice == 1 \
        else int(rng.integers(0, 2**60)) if choice == 2 else int(rng.integers(0, 2**20))
    return np.asarray(gq, np.int64), np.asarray(bq, np.int64), int(m), int(s), eps


@cocotb.test()
async def layernorm_cases(dut):
    rng = np.random.default_rng(SEED)
    drv = EngineDriver(dut)
    await drv.reset()
    for i, v in enumerate(intops.RSQRT_LUT):
        drv.write("rlut", i, int(v))
    sb = Scoreboard(f"vln.cols{C}", SEED)
    hw = SimpleNamespace(cols=C, rows=R)
    per_row = {}
    seen = {"V=0": 0, "V<64": 0, "V>=2**56": 0, "sat": 0, "in place": 0}
    n_cases = max(CASES, 2 * len(WORDS))
    for case in range(n_cases):
        words = WORDS[case % len(WORDS)]
        d = words * C
        n_rows = int(rng.integers(1, 7)) if case >= len(WORDS) else 1 + case % 2 * 3
        n_rows = max(1, min(n_rows, (DEPTHS["vmem"] // 2) // words))
        out16 = (case // len(WORDS)) % 2
        x = np.stack([special_row(KINDS[(case + r) % len(KINDS)] if r % 2 == case % 2
                                  else "random", d, rng) for r in range(n_rows)])
        x = x.astype(np.int64)
        gq, bq, m, s, eps = ln_params(rng, d, out16, case)
        src = int(rng.integers(0, 16))
        span = n_rows * words
        dst = src if case % 3 == 2 else src + span + int(rng.integers(0, 16))
        assert dst + span <= DEPTHS["vmem"] and PARAM + 1 + words <= DEPTHS["pmem"]
        xw = vmem_rows(x, C)
        for i, w in enumerate(xw):
            drv.write("vmem", src + i, lanes_to_int(w, 16))
        if dst != src:
            for i in range(span + 1):
                drv.write("vmem", dst + i, lanes_to_int(rng.integers(-2**15, 2**15, C), 16))
        drv.write("pmem", PARAM, lanes_to_int(
            pack_param_word("VLN", C, eps=eps, m=m, s=s, out16=out16), 64))
        for w, lanes in enumerate(pack_ln_features(gq, bq, C)):
            drv.write("pmem", PARAM + 1 + w, lanes_to_int(lanes, 64))
        want = intops.layernorm_i16(x, gq, bq, m, s, eps, out_bits=16 if out16 else 8)
        var = [d * int((r * r).sum()) - int(r.sum()) ** 2 + eps for r in x]
        seen["V=0"] += sum(v == 0 for v in var)
        seen["V<64"] += sum(0 < v < 64 for v in var)
        seen["V>=2**56"] += sum(v >= 2**56 for v in var)
        lim = 2**15 - 1 if out16 else 127
        seen["sat"] += int((np.abs(want) >= lim).sum())
        seen["in place"] += dst == src
        args = SimpleNamespace(src=src, dst=dst, rows=n_rows, words=words, param=PARAM)
        cycles = await drv.run(pack_args("VLN", **vars(args)))
        where = (f"case {case} (D={d} rows={n_rows} src={src} dst={dst} out16={out16} "
                 f"m={m} s={s} eps={eps})")
        sb.compare(f"{where} latency", vln_latency(args, hw), cycles)
        ww = vmem_rows(want, C)
        for i in range(span):
            sb.compare(f"{where} row {i // words} word {i % words}",
                       [int(v) for v in ww[i]], int_to_lanes(drv.read("vmem", dst + i), 16, C),
                       inputs=f"x={x[i // words].tolist()}")
        if dst != src:                        # the source is left as it was
            for i in range(span):
                sb.compare(f"{where} src word {i}", [int(v) for v in xw[i]],
                           int_to_lanes(drv.read("vmem", src + i), 16, C))
        per_row.setdefault(d, set()).add((n_rows, cycles))
    if min(WORDS) * C >= 64:                  # V >= D - 1 for a non-constant row
        seen.pop("V<64")
    assert all(seen.values()), f"coverage hole: {seen}"
    dut._log.info("VLN coverage: %s", seen)
    for d, runs in sorted(per_row.items()):
        dut._log.info("D=%d (%d words): (rows, cycles) %s", d, d // C, sorted(runs))
    sb.check(min_compared=n_cases * 2)


@cocotb.test()
async def zero_size(dut):
    """rows == 0 or words == 0: a no-op of latency 1."""
    drv = EngineDriver(dut)
    await drv.reset()
    sb = Scoreboard("vln.zero", SEED)
    for i in range(4):
        drv.write("vmem", 100 + i, 0x1234)
    for rows, words in ((0, 3), (2, 0)):
        args = SimpleNamespace(src=0, dst=100, rows=rows, words=words, param=PARAM)
        cycles = await drv.run(pack_args("VLN", **vars(args)))
        sb.compare(f"rows={rows} words={words} latency", vln_latency(args, None), cycles)
        for i in range(4):
            sb.compare(f"rows={rows} words={words} VMEM[{100 + i}]", 0x1234,
                       drv.read("vmem", 100 + i))
    sb.check(min_compared=10)
