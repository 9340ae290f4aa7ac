"""Programs that exercise the vector unit, the mover and REQUANT-to-VMEM, with their expected
results computed by ``model.intops`` / numpy from the original tensors.

Each case function returns a :class:`Case`: a finished program (``hw.program``) and, per
STORE tag, the expected values and how to read the stored words. ``cocotb_tests/tb_vector.py``
runs them on the RTL; ``tests/test_vector_cases.py`` runs the same programs on the ISA
simulator, so both executors are checked against intops.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from hw import isa
from hw.program import Program, ProgramBuilder, vmem_values
from hw.uarch import ACC, ACT, VMEM, WGT, AccelParams
from hw.vector import formats
from hw.vector.latency_arith import mean_pool_params
from model import intops


@dataclass
class Case:
    name: str
    program: Program
    #: tag -> (expected array, decoder of the stored words into an array like it)
    want: dict[str, tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]] = \
        field(default_factory=dict)


def vmem_decoder(width: int, cols: int) -> Callable[[np.ndarray], np.ndarray]:
    return lambda words: vmem_values(words, width, cols)


def acc_decoder(width: int) -> Callable[[np.ndarray], np.ndarray]:
    return lambda words: words.view("<i4").reshape(len(words), -1)[:, :width]


def _lut(b: ProgramBuilder, table: int, entries: np.ndarray, addr: int) -> None:
    C = b.p.cols
    n = len(entries)
    padded = np.zeros(-(-n // C) * C, np.int64)
    padded[:n] = entries
    b.load_vmem_lanes(addr, padded.reshape(-1, C))
    b.emit(isa.Instr("VLUT", {"table": table, "src": addr}))


# ----------------------------------------------------------------------------- LayerNorm


def layernorm_case(p: AccelParams, rng: np.random.Generator, rows: int, d: int, out16: bool,
                   kind: str = "random", blocks: int = 1) -> Case:
    """``rows`` int16 rows of width ``d`` in ``blocks`` word-aligned blocks of ``d/blocks``
    (block-padded when that is not a multiple of cols): random, or the edge ``kind``s
    "flat" (zero variance), "extreme" (all -32768 / alternating +-32767 / one-hot)."""
    C = p.cols
    block = d // blocks
    if kind == "flat":
        x = np.repeat(rng.integers(-32768, 32768, (rows, 1)), d, axis=1)
    elif kind == "extreme":
        x = np.zeros((rows, d), np.int64)
        x[0::3] = -32768
        x[1::3] = np.where(np.arange(d) % 2, 32767, -32767)
        x[2::3, 0] = 32767
    else:
        x = rng.integers(-32768, 32768, (rows, d))
        x[rng.random(rows) < 0.3] //= 97                   # small-magnitude rows too
    gamma, beta, m, s = intops.quantize_layernorm(rng.normal(1, 0.3, d), rng.normal(0, 0.2, d),
                                                  float(rng.choice([0.004, 0.02, 0.1]))
                                                  * (0.01 if out16 else 1))
    eps = intops.layernorm_eps_int(float(rng.choice([1e-5, 1e-3])), 0.5, d)
    b = ProgramBuilder(p)
    _lut(b, 1, intops.RSQRT_LUT, 1000)
    width = blocks * -(-block // C) * C
    words = width // C
    src = 64
    dst = src + rows * words
    garbage = rng.integers(-32768, 32768, (rows, width))          # padding lanes: ignored
    garbage[:, formats.block_lanes(blocks, block, C)] = x
    b.load_vmem_rows(src, garbage)
    b.load_pmem(0, formats.pack_param_word("VLN", C, eps=eps, m=m, s=s,
                                           out16=int(out16))[None])
    b.load_pmem(1, formats.pack_ln_features(formats.block_pad(gamma, blocks, block, C),
                                            formats.block_pad(beta, blocks, block, C), C))
    b.emit(isa.Instr("VLN", {"src": src, "dst": dst, "rows": rows, "blocks": blocks,
                             "block": block, "param": 0}))
    b.store(VMEM, dst, rows * words, "y")
    want = formats.block_pad(intops.layernorm_i16(x, gamma, beta, m, s, eps,
                                                  16 if out16 else 8), blocks, block, C)
    return Case(f"layernorm {kind} {rows}x{blocks}x{block} out{16 if out16 else 8}",
                b.finish(), {"y": (want, vmem_decoder(width, C))})


# ----------------------------------------------------------------------------- softmax


def softmax_case(p: AccelParams, rng: np.random.Generator, rows: int, ncols: int,
                 kind: str = "random", mrow: int | None = None, mcols: int = 0,
                 scale: float = 0.05) -> Case:
    """Scores of ``kind`` "random", "equal", "dominant", "extreme"; rows from ``mrow`` do not
    see columns ``< mcols``."""
    C = p.cols
    if kind == "equal":
        x = np.full((rows, ncols), int(rng.integers(-128, 128)))
    elif kind == "dominant":
        x = rng.integers(-128, -60, (rows, ncols))
        x[np.arange(rows), rng.integers(0, ncols, rows)] = 127
    elif kind == "extreme":
        x = np.where(rng.random((rows, ncols)) < 0.5, -128, 127)
    else:
        x = rng.integers(-128, 128, (rows, ncols))
    mrow = rows if mrow is None else mrow
    words = -(-ncols // C)
    lut = intops.make_exp_lut(scale)
    b = ProgramBuilder(p)
    _lut(b, 0, lut, 1000)
    src = 64
    dst = src + rows * words
    b.load_vmem_rows(src, x)
    b.emit(isa.Instr("VSOFTMAX", {"src": src, "dst": dst, "rows": rows, "words": words,
                                  "ncols": ncols, "mrow": mrow, "mcols": mcols}))
    b.store(VMEM, dst, rows * words, "p")
    allowed = np.ones((rows, ncols), bool)
    allowed[mrow:, :mcols] = False
    want = np.full((rows, words * C), -128, np.int64)
    want[:, :ncols] = intops.u8_to_i8(intops.softmax_u8(x, lut, allowed))
    return Case(f"softmax {kind} {rows}x{ncols} mask({mrow},{mcols}) scale {scale}", b.finish(),
                {"p": (want, vmem_decoder(words * C, C))})


# ----------------------------------------------------------------------------- elementwise


def add_case(p: AccelParams, rng: np.random.Generator, words: int, kind: str = "random",
             relu: bool = False) -> Case:
    C = p.cols
    n = words * C
    if kind == "saturate":
        a = np.where(rng.random(n) < 0.5, 127, -128)
        bb = np.where(a > 0, 32767, -32768) - rng.integers(0, 50, n) * np.sign(a)
        ma, mb, s = intops.quantize_add_multipliers(4.0, 1.0, 1.0)
    else:
        a = rng.integers(-32768, 32768, n)
        bb = rng.integers(-32768, 32768, n)
        ma, mb, s = intops.quantize_add_multipliers(float(rng.uniform(0.01, 1)),
                                                    float(rng.uniform(0.01, 1)), 1.5)
    b = ProgramBuilder(p)
    b.load_vmem_rows(0, a[None])
    b.load_vmem_rows(words, bb[None])
    b.load_pmem(3, formats.pack_param_word("VADD", C, m_a=ma, m_b=mb, s=s,
                                           relu=int(relu))[None])
    b.emit(isa.Instr("VADD", {"a": 0, "b": words, "dst": 2 * words, "count": words,
                              "param": 3}))
    b.store(VMEM, 2 * words, words, "y")
    want = intops.add_requant_i16(a, bb, ma, mb, s, relu)[None]
    return Case(f"add16 {kind} {words} words relu={relu}", b.finish(),
                {"y": (want, vmem_decoder(n, C))})


def squash_case(p: AccelParams, rng: np.random.Generator, mode: str) -> Case:
    """mode "clamp": requantize + clamp at both bounds; "tanh": every table entry."""
    C = p.cols
    x = np.arange(-128, 128) if mode == "tanh" else rng.integers(-128, 128, 8 * C)
    words = -(-len(x) // C)
    xs = np.zeros(words * C, np.int64)
    xs[:len(x)] = x
    b = ProgramBuilder(p)
    b.load_vmem_rows(16, xs[None])
    if mode == "tanh":
        lut = intops.make_tanh_lut(0.03, 1 / 127)
        _lut(b, 0, lut, 1000)
        b.load_pmem(0, formats.pack_param_word("VSQUASH", C, mode=1)[None])
        want = intops.lut_i8(xs, lut)
    else:
        m, s, lo, hi = 24000, 14, -20, 37
        b.load_pmem(0, formats.pack_param_word("VSQUASH", C, mode=0, m=m, s=s, lo=lo,
                                               hi=hi)[None])
        want = intops.clamp_i8(intops.requantize(xs, m, s), lo, hi)
    dst = 16 + words
    b.emit(isa.Instr("VSQUASH", {"src": 16, "dst": dst, "count": words, "param": 0}))
    b.store(VMEM, dst, words, "y")
    return Case(f"squash {mode}", b.finish(), {"y": (want[None], vmem_decoder(words * C, C))})


def colsum_case(p: AccelParams, rng: np.random.Generator, kind: str, rows: int,
                width: int) -> Case:
    """kind "mean" (mean_pool_i8), "sum16" (sum_rows_i16 + requantize), "zero_point"
    (zero_point_bias into ACC); strided rows (every other VMEM row)."""
    C = p.cols
    words = -(-width // C)
    lo, hi = (-32768, 32768) if kind == "sum16" else (-128, 128)
    x = rng.integers(lo, hi, (rows, width))
    stride = 2 * words
    b = ProgramBuilder(p)
    full = np.zeros((rows * 2, words * C), np.int64)
    full[0::2, :width] = x
    b.load_vmem_rows(0, full)
    dst = rows * stride
    if kind == "mean":
        off, m, s, post = mean_pool_params(rows)
        want, out = intops.mean_pool_i8(x, axis=0), 0
    elif kind == "sum16":
        m, s = 3 * 2**12 // rows + 1, 18
        off, post = 0, 0
        want, out = intops.requantize(intops.sum_rows_i16(x, axis=0), m, s), 0
    else:
        off, m, s, post = 0, 256, 1, 0
        want, out = intops.zero_point_bias(x), 2
    b.load_pmem(0, formats.pack_param_word("VSUM", C, off=off, m=m, s=s, post=post)[None])
    b.emit(isa.Instr("VSUM", {"src": 0, "stride": stride, "rows": rows, "words": words,
                              "dst": 0 if out == 2 else dst, "out": out, "param": 0}))
    if out == 2:
        b.store(ACC, 0, words, "y")
        dec = lambda w: w.view("<i4").reshape(1, -1)[:, :width]  # noqa: E731
    else:
        b.store(VMEM, dst, words, "y")
        dec = vmem_decoder(width, C)
    return Case(f"colsum {kind} {rows}x{width}", b.finish(), {"y": (want.reshape(1, -1), dec)})


# ----------------------------------------------------------------------------- moves + GEMMs


def _tile_gemm(b: ProgramBuilder, act: int, wgt: int, acc: int, k: int) -> None:
    b.emit(isa.matmul(act, wgt, acc, k))


def _load_act(b: ProgramBuilder, addr: int, a: np.ndarray) -> None:
    """A (m <= rows, K) as K K-major ACT words."""
    R = b.p.rows
    words = np.zeros((a.shape[1], R), np.int8)
    words[:, :a.shape[0]] = a.T
    b.load(ACT, addr, words.view(np.uint8))


def _load_wgt(b: ProgramBuilder, addr: int, w: np.ndarray) -> None:
    """B (K, n <= cols) as K row-major WGT words."""
    C = b.p.cols
    words = np.zeros((w.shape[0], C), np.int8)
    words[:, :w.shape[1]] = w
    b.load(WGT, addr, words.view(np.uint8))


def _requant_param(b: ProgramBuilder, addr: int, m: int, s: int) -> None:
    b.load_acc(addr, np.array([[isa.pack_param(m, s)] * b.p.cols], np.uint32).view(np.int32))


def requant_vmem_case(p: AccelParams, rng: np.random.Generator, out16: bool,
                      dstride: int) -> Case:
    """A tile GEMM, REQUANT into VMEM rows ``dstride`` words apart, STORE of those words."""
    R, C = p.rows, p.cols
    k = int(rng.integers(3, 40))
    a, w = rng.integers(-128, 128, (R, k)), rng.integers(-128, 128, (k, C))
    m, s = int(rng.integers(16384, 32768)), (8 if out16 else 16)
    b = ProgramBuilder(p)
    b.load_vmem_rows(5, np.zeros(((R - 1) * dstride + 1, C), np.int64))  # defined gaps
    _load_act(b, 0, a)
    _load_wgt(b, 0, w)
    _requant_param(b, R, m, s)
    _tile_gemm(b, 0, 0, 0, k)
    out = 2 if out16 else 1
    b.emit(isa.Instr("REQUANT", {"src": 0, "dst": 5, "param": R, "rows": R, "relu": 1,
                                 "out": out, "dstride": dstride}))
    b.store(VMEM, 5, (R - 1) * dstride + 1, "y")
    fn = intops.requantize_i16 if out16 else intops.requantize
    want = fn(intops.gemm_i32(a, w), m, s, relu=True)
    return Case(f"requant->VMEM{16 if out16 else 8} dstride {dstride}", b.finish(),
                {"y": (want, lambda words, d=dstride: vmem_values(words, C, C)[::d])})


def chain_case(p: AccelParams, rng: np.random.Generator, kind: str) -> Case:
    """On-chip movement between GEMMs: Y = requant(X1 @ W1) in VMEM rows, then
    "A": Y -> ACT (K-major, MTRANS), Z = Y @ W2; "KT": Y -> WGT as Y^T (MTRANS), Z = A2 @ Y^T;
    "V": Y -> WGT rows (MCOPY), Z = A2 @ Y; "concat": [Y; Y2] along tokens in the same ACT
    words at byte offsets 0 and m1 (two MTRANS), Z = [Y; Y2] @ W2; "fold": Y (T, 2*h) read
    as (2T, h) rows through the stride, Z = fold(Y) @ W2."""
    R, C = p.rows, p.cols
    b = ProgramBuilder(p)
    m1 = R if kind != "concat" else max(1, R // 2)
    k1 = int(rng.integers(5, 30))
    x1, w1 = rng.integers(-128, 128, (m1, k1)), rng.integers(-128, 128, (k1, C))
    ms, ss = 20000, 19
    _load_act(b, 0, x1)
    _load_wgt(b, 0, w1)
    _requant_param(b, 2 * R, ms, ss)
    _tile_gemm(b, 0, 0, 0, k1)
    b.emit(isa.Instr("REQUANT", {"src": 0, "dst": 100, "param": 2 * R, "rows": m1, "out": 1,
                                 "dstride": 1}))
    y = intops.requantize(intops.gemm_i32(x1, w1), ms, ss)     # (m1, C), VMEM rows 100..
    if kind == "A":
        b.emit(isa.Instr("MTRANS", {"src": 100, "stride": 1, "rows": m1, "ncols": C,
                                    "bank": 0, "dst": 200, "boff": 0}))
        w2 = rng.integers(-128, 128, (C, C))
        _load_wgt(b, 150, w2)
        _tile_gemm(b, 200, 150, R, C)
        want = intops.gemm_i32(y, w2)
    elif kind == "KT":
        keys = min(m1, C)
        b.emit(isa.Instr("MTRANS", {"src": 100, "stride": 1, "rows": keys, "ncols": C,
                                    "bank": 1, "dst": 200, "boff": 0}))
        a2 = rng.integers(-128, 128, (R, C))
        _load_act(b, 150, a2)
        _tile_gemm(b, 150, 200, R, C)
        want = intops.gemm_i32(a2, y[:keys].T)
        want = np.pad(want, ((0, 0), (0, C - keys)))
    elif kind == "V":
        b.emit(isa.Instr("MCOPY", {"src": 100, "dst": 200, "count": m1, "bank": 1,
                                   "stride": 1}))
        a2 = rng.integers(-128, 128, (R, m1))
        _load_act(b, 150, a2)
        _tile_gemm(b, 150, 200, R, m1)
        want = intops.gemm_i32(a2, y)
    elif kind == "concat":
        m2 = R - m1
        x2 = rng.integers(-128, 128, (m2, k1))
        _load_act(b, 50, x2)
        _tile_gemm(b, 50, 0, R, k1)
        b.emit(isa.Instr("REQUANT", {"src": R, "dst": 120, "param": 2 * R, "rows": m2,
                                     "out": 1, "dstride": 1}))
        y2 = intops.requantize(intops.gemm_i32(x2, w1), ms, ss)
        b.emit(isa.Instr("MTRANS", {"src": 100, "stride": 1, "rows": m1, "ncols": C,
                                    "bank": 0, "dst": 200, "boff": 0}))
        b.emit(isa.Instr("MTRANS", {"src": 120, "stride": 1, "rows": m2, "ncols": C,
                                    "bank": 0, "dst": 200, "boff": m1}))
        w2 = rng.integers(-128, 128, (C, C))
        _load_wgt(b, 150, w2)
        _tile_gemm(b, 200, 150, 3 * R, C)
        want = intops.gemm_i32(np.concatenate([y, y2]), w2)
        b.store(ACC, 3 * R, R, "z")
        return Case(f"chain {kind}", b.finish(), {"z": (want, acc_decoder(C))})
    else:  # fold: rows of 2 words read as twice as many rows of 1 word
        t = max(1, R // 2)
        ym = rng.integers(-128, 128, (t, 2 * C))
        b.load_vmem_rows(400, ym)
        b.emit(isa.Instr("MTRANS", {"src": 400, "stride": 1, "rows": 2 * t, "ncols": C,
                                    "bank": 0, "dst": 200, "boff": 0}))
        w2 = rng.integers(-128, 128, (C, C))
        _load_wgt(b, 150, w2)
        _tile_gemm(b, 200, 150, R, C)
        folded = ym.reshape(2 * t, C)
        want = np.pad(intops.gemm_i32(folded, w2), ((0, R - 2 * t), (0, 0)))
    b.store(ACC, R, R, "z")
    return Case(f"chain {kind}", b.finish(), {"z": (want[:R], acc_decoder(C))})


__all__ = ["Case", "add_case", "chain_case", "colsum_case", "layernorm_case",
           "requant_vmem_case", "softmax_case", "squash_case"]


# ----------------------------------------------------------------------------- random mixes


def random_program(p: AccelParams, rng: np.random.Generator, n_ops: int) -> Program:
    """A random valid program mixing LOAD/MATMUL/REQUANT/STORE with vector and mover ops on
    shared regions, in a random order (the builder adds the dependency fields). VMEM regions
    keep a type (int8 or int16) so every op gets inputs its semantics accept; every word the
    program reads or stores is loaded first (the RTL keeps the previous program's memory
    contents); everything written is stored at the end, so the output stream covers the
    whole state."""
    R, C = p.rows, p.cols
    b = ProgramBuilder(p)
    words = 4                                   # every region: 4 VMEM words
    n_regions = 12
    base = 40
    kind = {}                                   # region -> "i8" | "i16"
    for r in range(n_regions):
        signed16 = r % 3 == 2
        vals = rng.integers(-32768, 32768, (1, words * C)) if signed16 else \
            rng.integers(-128, 128, (1, words * C))
        b.load_vmem_rows(base + r * words, vals)
        kind[r] = "i16" if signed16 else "i8"
    _lut(b, 0, intops.make_exp_lut(float(rng.uniform(0.01, 0.2))), 1000)
    _lut(b, 1, intops.RSQRT_LUT, 1100)
    ma, mb, s = intops.quantize_add_multipliers(0.5, 0.25, 1.0)
    off, mpool, spool, post = mean_pool_params(2)
    gamma, beta, mln, sln = intops.quantize_layernorm(rng.normal(1, .2, 2 * C),
                                                      rng.normal(0, .1, 2 * C), 0.05)
    b.load_pmem(0, np.stack([
        formats.pack_param_word("VADD", C, m_a=ma, m_b=mb, s=s),
        formats.pack_param_word("VSQUASH", C, mode=0, m=30000, s=15, lo=-50, hi=60),
        formats.pack_param_word("VSUM", C, off=off, m=mpool, s=spool, post=post),
        formats.pack_param_word("VLN", C, eps=3, m=mln, s=sln)]))
    b.load_pmem(4, formats.pack_ln_features(gamma, beta, C))
    _load_wgt(b, 0, rng.integers(-128, 128, (2 * C, C)))
    _load_act(b, 0, rng.integers(-128, 128, (R, 2 * C)))   # every byte MTRANS may leave
    b.load_acc(0, np.zeros((4 * R, C), np.int64))           # every tile stored at the end
    _requant_param(b, 4 * R, 20000, 20)
    acc_tiles = 0

    def region(kinds=("i8", "i16")) -> int:
        return int(rng.choice([r for r in range(n_regions) if kind[r] in kinds]))

    def addr(r: int) -> int:
        return base + r * words

    for _ in range(n_ops):
        op = str(rng.choice(["VADD", "VSQUASH", "VSUM", "VSOFTMAX", "VLN", "MCOPY", "MTRANS",
                             "GEMM", "STORE"]))
        src, dst = region(), region()
        if op == "VADD":
            b.emit(isa.Instr("VADD", {"a": addr(src), "b": addr(region()), "dst": addr(dst),
                                      "count": words, "param": 0}))
            kind[dst] = "i16"
        elif op == "VSQUASH":
            src = region(("i8",))
            b.emit(isa.Instr("VSQUASH", {"src": addr(src), "dst": addr(dst), "count": words,
                                         "param": 1}))
            kind[dst] = "i8"
        elif op == "VSUM":
            src = region(("i8",))
            b.emit(isa.Instr("VSUM", {"src": addr(src), "stride": 2, "rows": 2, "words": 2,
                                      "dst": addr(dst), "out": 0, "param": 2}))
            kind[dst] = "i8" if kind[dst] == "i8" else kind[dst]
        elif op == "VSOFTMAX":
            src = region(("i8",))
            b.emit(isa.Instr("VSOFTMAX", {"src": addr(src), "dst": addr(dst), "rows": 2,
                                          "words": 2, "ncols": 2 * C - 1, "mrow": 1,
                                          "mcols": 1}))
            kind[dst] = "i8"
        elif op == "VLN":
            b.emit(isa.Instr("VLN", {"src": addr(src), "dst": addr(dst), "rows": 2,
                                     "blocks": 1, "block": 2 * C, "param": 3}))
            kind[dst] = "i8"
        elif op == "MCOPY":
            stride = int(rng.integers(1, 3))
            if stride > 1:                      # a partial copy: dst keeps its other words
                dst = region((kind[src],))
            b.emit(isa.Instr("MCOPY", {"src": addr(src), "dst": addr(dst),
                                       "count": words // stride, "bank": 0,
                                       "stride": stride}))
            kind[dst] = kind[src]
        elif op == "MTRANS":
            n = int(rng.integers(1, min(R, 2) + 1))
            b.emit(isa.Instr("MTRANS", {"src": addr(src), "stride": 2, "rows": n,
                                        "ncols": 2 * C, "bank": 0, "dst": 0,
                                        "boff": int(rng.integers(0, R - n + 1))}))
        elif op == "GEMM":
            tile = acc_tiles % 4
            acc_tiles += 1
            b.emit(isa.matmul(0, 0, tile * R, 2 * C))
            b.emit(isa.Instr("REQUANT", {"src": tile * R, "dst": addr(dst), "param": 4 * R,
                                         "rows": min(R, words), "out": 1, "dstride": 1}))
            kind[dst] = "i8"
        else:
            b.store(VMEM, addr(src), words, f"r{src}")
    for r in range(n_regions):
        b.store(VMEM, addr(r), words, f"final{r}")
    b.store(ACC, 0, 4 * R, "acc")
    return b.finish()


__all__ += ["random_program"]
