"""cocotb testbench of the VLN engine (hw/vector/layernorm.py) in the engine harness.

Seeded LayerNorms of block-padded int16 rows (``blocks`` blocks of ``block`` elements, each
block word-aligned, ``formats.block_lanes``) against ``model.intops.layernorm_i16`` on the
``D = blocks * block`` valid elements. Shapes ``blocks x block`` from FOLDACCEL_SHAPES: ``block``
a multiple of ``cols`` (no padding; the ``cols = 16`` run covers D = 64, 128 and 512, in one
and in several blocks) and ``block`` not a multiple of ``cols`` (padding lanes in the last word
of every block). The padding lanes of the source words and of the gamma/beta PMEM words hold
random garbage (half the cases full-scale +-32767/-32768), which must not change the result;
every padding lane of the output must be 0. 1..6 rows per instruction, both ``out16``
settings, gamma/beta/m/s from ``intops.quantize_layernorm`` of random float parameters (and
raw random ``m``/``s``), ``eps`` 0, from ``intops.layernorm_eps_int``, up to ``2**20`` and up to
``2**60 - 1``. Special rows mixed into every case: zero variance (constant, all -32768: ``V =
eps``, with ``eps = 0`` ``V = 0``), alternating +-32767, one-hot (+32767 and -32768), tiny
variance. In-place (``dst == src``) and disjoint destinations. The rsqrt table is preloaded
into the RLUT memory from ``intops.RSQRT_LUT``. Every word of the destination, the guard words
just before and after it (untouched), the source when disjoint (untouched, garbage included)
and the latency (``latency_arith.vln_latency``) are scoreboarded. Environment: FOLDACCEL_SEED,
FOLDACCEL_COLS, FOLDACCEL_ROWS, FOLDACCEL_CASES, FOLDACCEL_SHAPES (comma-separated
``BLOCKSxBLOCK``).
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
    testbench_params,
)
from hw.vector.formats import block_lanes, pack_ln_features, pack_param_word
from hw.vector.latency_arith import vln_latency
from model import intops
from sim.rtl.scoreboard import Scoreboard

SEED, C, R, CASES = testbench_params(cols=4, rows=4, cases=20)
SHAPES = [tuple(int(v) for v in sh.split("x")) for sh in
          os.environ.get("FOLDACCEL_SHAPES", "1x4,2x4,1x12,2x6,3x5,1x7,4x3").split(",")]
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


def ln_params(rng, d: int, out16: int, case: int, choice: int):
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
    seen = {"V=0": 0, "V<64": 0, "V>=2**56": 0, "sat": 0, "in place": 0, "padded rows": 0,
            "multi-block rows": 0}
    kinds = dict.fromkeys(KINDS, 0)              # special rows of each kind
    n_cases = max(CASES, 2 * len(SHAPES))
    for case in range(n_cases):
        blocks, block = SHAPES[case % len(SHAPES)]
        bw = -(-block // C)
        words, d = blocks * bw, blocks * block
        valid = block_lanes(blocks, block, C)             # lanes of the D elements in a row
        pad = np.setdiff1d(np.arange(words * C), valid)   # padding lanes
        n_rows = int(rng.integers(1, 7)) if case >= len(SHAPES) else 1 + case % 2 * 3
        n_rows = max(1, min(n_rows, (DEPTHS["vmem"] // 2 - 20) // words))
        out16 = (case // len(SHAPES)) % 2
        k0 = case + case // len(SHAPES)               # every shape meets every kind
        row_kinds = [KINDS[(k0 + r // 2) % len(KINDS)] if r % 2 == case % 2 else "random"
                     for r in range(n_rows)]
        x = np.stack([special_row(kind, d, rng) for kind in row_kinds]).astype(np.int64)
        eps_choice = (case + case // len(SHAPES)) % 4
        if "small" in row_kinds and case % 4 < 2:     # eps = 0: V = D - 1 (< 64 for D <= 64)
            eps_choice = 0
        gq, bq, m, s, eps = ln_params(rng, d, out16, case, eps_choice)
        src = int(rng.integers(1, 17))
        span = n_rows * words
        dst = src if case % 3 == 2 else src + span + 1 + int(rng.integers(0, 16))
        assert dst + span < DEPTHS["vmem"] and PARAM + 1 + words <= DEPTHS["pmem"]
        # source rows: the valid lanes, random garbage in the padding lanes
        xr = np.zeros((n_rows, words * C), np.int64)
        xr[:, valid] = x
        if case % 2:
            xr[:, pad] = rng.choice([-2**15, 2**15 - 1], (n_rows, len(pad)))
        else:
            xr[:, pad] = rng.integers(-2**15, 2**15, (n_rows, len(pad)))
        xw = xr.reshape(-1, C)
        for i, w in enumerate(xw):
            drv.write("vmem", src + i, lanes_to_int(w, 16))
        guards = {a: lanes_to_int(rng.integers(-2**15, 2**15, C), 16)
                  for a in (dst - 1, dst + span)}
        if dst != src:
            for i in range(span):
                drv.write("vmem", dst + i, lanes_to_int(rng.integers(-2**15, 2**15, C), 16))
        for a, v in guards.items():
            drv.write("vmem", a, v)
        drv.write("pmem", PARAM, lanes_to_int(
            pack_param_word("VLN", C, eps=eps, m=m, s=s, out16=out16), 64))
        g_row, b_row = np.zeros(words * C, np.int64), np.zeros(words * C, np.int64)
        g_row[valid], b_row[valid] = gq, bq
        feat = pack_ln_features(g_row, b_row, C).reshape(-1)
        feat[pad] = rng.integers(0, 2**64, len(pad), dtype=np.uint64)   # ignored lanes
        for w, lanes in enumerate(feat.reshape(words, C)):
            drv.write("pmem", PARAM + 1 + w, lanes_to_int(lanes, 64))
        want = intops.layernorm_i16(x, gq, bq, m, s, eps, out_bits=16 if out16 else 8)
        wr = np.zeros((n_rows, words * C), np.int64)
        wr[:, valid] = want
        ww = wr.reshape(-1, C)
        var = [d * int((r * r).sum()) - int(r.sum()) ** 2 + eps for r in x]
        for kind in row_kinds:
            kinds[kind] = kinds.get(kind, 0) + 1
        seen["V=0"] += sum(v == 0 for v in var)
        seen["V<64"] += sum(0 < v < 64 for v in var)
        seen["V>=2**56"] += sum(v >= 2**56 for v in var)
        lim = 2**15 - 1 if out16 else 127
        seen["sat"] += int((np.abs(want) >= lim).sum())
        seen["in place"] += dst == src
        seen["padded rows"] += n_rows * (len(pad) > 0)
        seen["multi-block rows"] += n_rows * (blocks > 1)
        args = SimpleNamespace(src=src, dst=dst, rows=n_rows, blocks=blocks, block=block,
                               param=PARAM)
        cycles = await drv.run(pack_args("VLN", **vars(args)))
        where = (f"case {case} (blocks={blocks} block={block} D={d} words={words} "
                 f"rows={n_rows} src={src} dst={dst} out16={out16} m={m} s={s} eps={eps})")
        sb.compare(f"{where} latency", vln_latency(args, hw), cycles)
        got = np.array([int_to_lanes(drv.read("vmem", dst + i), 16, C) for i in range(span)])
        for i in range(span):
            sb.compare(f"{where} row {i // words} word {i % words}",
                       [int(v) for v in ww[i]], [int(v) for v in got[i]],
                       inputs=f"x={x[i // words].tolist()}")
        for r, row in enumerate(got.reshape(n_rows, words * C)):
            sb.compare(f"{where} row {r} padding lanes {pad.tolist()}", [0] * len(pad),
                       [int(v) for v in row[pad]])
        for a, v in guards.items():             # the words around the destination
            sb.compare(f"{where} VMEM[{a}] outside the destination", v, drv.read("vmem", a))
        if dst != src:                        # the source is left as it was (garbage too)
            for i in range(span):
                sb.compare(f"{where} src word {i}", [int(v) for v in xw[i]],
                           int_to_lanes(drv.read("vmem", src + i), 16, C))
        per_row.setdefault((blocks, block), set()).add((n_rows, cycles))
    if min(b * k for b, k in SHAPES) >= 64:   # V >= D - 1 for a non-constant row
        seen.pop("V<64")
    if all(k % C == 0 for _, k in SHAPES):
        seen.pop("padded rows")
    if all(b == 1 for b, _ in SHAPES):
        seen.pop("multi-block rows")
    sb.check(min_compared=n_cases * 4)
    assert all(seen.values()) and all(kinds.values()), f"coverage hole: {seen} {kinds}"
    dut._log.info("VLN coverage: %s, special rows %s", seen, kinds)
    for (blocks, block), runs in sorted(per_row.items()):
        dut._log.info("blocks=%d block=%d D=%d (%d words): (rows, cycles) %s", blocks, block,
                      blocks * block, blocks * -(-block // C), sorted(runs))


@cocotb.test()
async def zero_size(dut):
    """rows == 0, blocks == 0 or block == 0: a no-op of latency 1."""
    drv = EngineDriver(dut)
    await drv.reset()
    sb = Scoreboard("vln.zero", SEED)
    for i in range(4):
        drv.write("vmem", 100 + i, 0x1234)
    hw = SimpleNamespace(cols=C, rows=R)
    for rows, blocks, block in ((0, 2, 3), (2, 0, 5), (2, 3, 0)):
        args = SimpleNamespace(src=0, dst=100, rows=rows, blocks=blocks, block=block,
                               param=PARAM)
        cycles = await drv.run(pack_args("VLN", **vars(args)))
        what = f"rows={rows} blocks={blocks} block={block}"
        sb.compare(f"{what} latency", vln_latency(args, hw), cycles)
        sb.compare(f"{what} latency is 1", 1, cycles)
        for i in range(4):
            sb.compare(f"{what} VMEM[{100 + i}]", 0x1234, drv.read("vmem", 100 + i))
    sb.check(min_compared=18)
