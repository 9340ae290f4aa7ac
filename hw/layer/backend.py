"""The instruction-emitting ops backend of the golden dataflow.

:class:`InstrOps` has the interface of ``model.golden.NumpyOps``; when
``GoldenEncoder.infer``/``layer_step`` run on it, every op emits the accelerator
instructions that compute it on symbolic tensors (``hw/layer/symbols.py``) instead of
computing a value, so the program is the golden op sequence by construction:

==================  ======================================================================
golden op           instructions
==================  ======================================================================
layernorm_i16       VLN (parameters in PMEM; the RLUT holds the rsqrt table)
gemm_i32+requantize A operand: MTRANS of every row part into K-major ACT tiles (byte offsets
                    concatenate along tokens, word offsets along features); B: weight tiles
                    (resident or LOADed), K^T (MTRANS into WGT) or V (MCOPY into WGT); MATMUL
                    per tile (BIAS mode with the bias word), REQUANT into VMEM rows
softmax_u8          VLUT (the layer's exp table, once per layer) + VSOFTMAX (mask: rows from
                    ``mrow`` do not see columns below ``mcols``)
zero_point_bias     VSUM of V's rows (x128 into an ACC bias word)
add_requant_i16     VADD
mean_pool_i8        VSUM (mean-pool parameters)
sum_rows_i16+requ.  VSUM
clamp(requantize)   VSQUASH mode 0; lut_i8: VLUT (tanh table) + VSQUASH mode 1
ring_push           MCOPY into the ring slots (VMEM)
cat of input rows   LOAD of the host's rows
==================  ======================================================================

Slicing, folding, unfolding, ``ring_view`` and concatenations a consumer can read in parts
emit nothing. Buffers come from allocators: a VMEM heap whose blocks are freed when the
golden dataflow drops the last reference to a tensor (:class:`Heap`), wrap-around rings for
operand tiles, accumulators and streamed constants; constants are resident (placed once,
loaded by the preload program) or streamed (LOADed before each use) per bank
(:class:`ConstStore`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from hw import isa
from hw.layer import host
from hw.layer.symbols import (
    Buf,
    Cat,
    CatCols,
    Const,
    Input,
    LayerCompileError,
    Layout,
    Mask,
    PendingColSum,
    PendingGemm,
    PendingRequant,
    PendingZeroPoint,
    Sym,
    Trace,
    Transposed,
)
from hw.opcodes import REQUANT_OUT
from hw.program import ProgramBuilder
from hw.uarch import ACC, BANK_NAMES, PMEM, VMEM, WGT, AccelParams
from hw.vector import formats
from hw.vector.latency_arith import mean_pool_params
from hw.vector.ops import VSUM_OUT
from model.config import ModelConfig

# ----------------------------------------------------------------------------- allocators


class Region:
    """Bump allocation in words ``[base, end)`` of one bank; :meth:`reset` frees everything.
    A *measuring* region (``measure=True``) never fails: it counts what is asked and hands
    out addresses that wrap around inside it (for a plan-only compile)."""

    def __init__(self, bank: int, base: int, end: int, name: str, measure: bool = False):
        self.bank, self.base, self.end, self.name = bank, base, end, name
        self.top = base
        self.peak = base
        self.measure = measure

    def alloc(self, n: int) -> int:
        if self.measure:
            span = max(1, self.end - self.base - n)
            addr = self.base + (self.top - self.base) % span
            self.top += n
            self.peak = max(self.peak, self.top)
            return addr
        if self.top + n > self.end:
            raise LayerCompileError(
                f"the {BANK_NAMES[self.bank]} bank is too small: {self.name} needs "
                f"{self.top + n - self.base} words, it has {self.end - self.base}; fix: raise "
                f"the bank's size in [hardware] or shrink the model")
        addr = self.top
        self.top += n
        self.peak = max(self.peak, self.top)
        return addr

    def reset(self) -> None:
        self.top = self.base

    @property
    def used(self) -> int:
        return self.peak - self.base


class Alloc:
    """A block of a :class:`Heap`, freed when the last tensor that references it goes away
    (the symbolic tensors and their views share it), so space is reused as soon as the
    golden dataflow drops a value; the dependency tracker orders the reuse after the last
    reader."""

    def __init__(self, heap: Heap, addr: int, n: int):
        self.heap, self.addr, self.n = heap, addr, n

    def __del__(self) -> None:
        self.heap.free(self.addr, self.n)


class Heap:
    """First-fit allocation with frees in words ``[base, end)`` of one bank (VMEM tensors).
    ``high`` is the highest word ever used above ``base`` (the space a plan must reserve)."""

    def __init__(self, bank: int, base: int, end: int, name: str):
        self.bank, self.base, self.end, self.name = bank, base, end, name
        self.free_list: list[tuple[int, int]] = [(base, end - base)]   # (addr, n), sorted
        self.in_use = 0
        self.high = base

    def alloc(self, n: int) -> Alloc:
        n = max(1, n)
        for k, (addr, size) in enumerate(self.free_list):
            if size >= n:
                self.free_list[k:k + 1] = [(addr + n, size - n)] if size > n else []
                break
        else:
            raise LayerCompileError(
                f"the {BANK_NAMES[self.bank]} bank is too small: {self.name} need "
                f"{self.in_use + n} words at once (fragmented in {self.end - self.base}); fix: "
                "raise vmem_kib in [hardware] or shrink the model")
        self.in_use += n
        self.high = max(self.high, addr + n)
        return Alloc(self, addr, n)

    def free(self, addr: int, n: int) -> None:
        self.in_use -= n
        blocks = sorted(self.free_list + [(addr, n)])
        merged: list[tuple[int, int]] = []
        for a, s in blocks:
            if s == 0:
                continue
            if merged and merged[-1][0] + merged[-1][1] >= a:
                pa, ps = merged[-1]
                merged[-1] = (pa, max(pa + ps, a + s) - pa)
            else:
                merged.append((a, s))
        self.free_list = merged

    @property
    def used(self) -> int:
        return self.high - self.base


class Ring:
    """Wrap-around allocation in ``[base, end)``: the oldest space is reused first; the
    dependency tracker orders a reuse after the last reader of the old contents, so a ring
    only needs to be larger than what is live at once."""

    def __init__(self, bank: int, base: int, end: int, name: str):
        self.bank, self.base, self.end, self.name = bank, base, end, name
        self.top = base
        self.biggest = 0

    def alloc(self, n: int) -> int:
        if n > self.end - self.base:
            raise LayerCompileError(
                f"the {BANK_NAMES[self.bank]} bank is too small: {self.name} needs a block of "
                f"{n} words, it has {self.end - self.base}; fix: raise the bank's size in "
                "[hardware] or shrink the model")
        if self.top + n > self.end:
            self.top = self.base
        addr = self.top
        self.top += n
        self.biggest = max(self.biggest, n)
        return addr


# ----------------------------------------------------------------------------- constants


@dataclass
class ConstStore:
    """Where each constant lives. Per bank: ``resident`` (placed once in ``regions[bank]``,
    loaded by the preload program) or streamed (LOADed into ``rings[bank]`` before each use).
    Each constant's words (host packing) are made on first use by :meth:`data_of` and
    shared by all segment programs; compiling for timing alone never packs them."""

    resident: dict[int, bool]
    regions: dict[int, Region]
    rings: dict[int, Ring]
    placed: dict[Any, tuple[int, int, int]] = field(default_factory=dict)  # key -> bank, addr, n
    data: dict[Any, np.ndarray] = field(default_factory=dict)
    makers: dict[Any, Callable[[], np.ndarray]] = field(default_factory=dict)
    sizes: dict[Any, tuple[int, int]] = field(default_factory=dict)   # key -> (bank, words)
    param_values: dict[Any, tuple] = field(default_factory=dict)   # PMEM parameter values
    #: set once the preload program exists: a new resident constant would be missing from it
    frozen: bool = False

    def get(self, em: Emitter, key: Any, bank: int, make: Callable[[], np.ndarray],
            n: int) -> int:
        """Address of constant ``key`` of ``n`` words (``make()`` -> its words as bytes)."""
        self.register(key, bank, make, n)
        if self.resident[bank]:
            if key not in self.placed:
                if self.frozen:
                    raise LayerCompileError(f"constant {key} first used after the preload "
                                            "program was built")
                self.placed[key] = (bank, self.regions[bank].alloc(n), n)
            return self.placed[key][1]
        addr = self.rings[bank].alloc(n)
        em.load(bank, addr, n, ("const", key))
        return addr

    def register(self, key: Any, bank: int, make: Callable[[], np.ndarray], n: int) -> None:
        """Know constant ``key`` (``n`` words for ``bank``; ``make`` packs them)."""
        self.makers.setdefault(key, make)
        self.sizes[key] = (bank, n)

    def unique_bytes(self, p: AccelParams) -> int:
        """Bytes of every constant the programs use, each counted once (the deployed
        weights, parameter words and tables)."""
        return sum(n * p.word_bytes(bank) for bank, n in self.sizes.values())

    def data_of(self, key: Any) -> np.ndarray:
        """The words of constant ``key`` as bytes (made once; the host packing checks them
        against the LOAD that carries them)."""
        if key not in self.data:
            self.data[key] = self.makers[key]()
        return self.data[key]

    def words(self, bank: int) -> int:
        return sum(n for b, _, n in self.placed.values() if b == bank)


# ----------------------------------------------------------------------------- emission


class Emitter:
    """A :class:`hw.program.ProgramBuilder` whose LOADs name their data (``source``) instead of
    carrying it: the same program serves every segment, packed with each one's input."""

    def __init__(self, p: AccelParams, track: bool = True):
        self.b = ProgramBuilder(p, track)
        self.gemms: list[tuple[int, int, int]] = []     # (M, K, N) of the GEMMs emitted
        self.sources: list[tuple[Any, int, int]] = []   # (source, bank, words) per LOAD

    def emit(self, ins: isa.Instr) -> isa.Instr:
        return self.b.emit(ins)

    def load(self, bank: int, addr: int, count: int, source: Any) -> None:
        self.b.emit(isa.load(bank, addr, count))
        self.sources.append((source, bank, count))

    def store(self, bank: int, addr: int, count: int, tag: str) -> None:
        self.b.store(bank, addr, count, tag)


def _mask_pattern(allowed: np.ndarray) -> tuple[int, int]:
    """``(mrow, mcols)`` of a mask that lets rows before ``mrow`` see every column and rows
    from ``mrow`` every column from ``mcols`` (the golden step's mask)."""
    a = np.asarray(allowed, bool)
    rows, cols = a.shape
    blocked = ~a
    mrow = next((r for r in range(rows) if blocked[r].any()), rows)
    mcols = int(np.argmin(blocked[mrow])) if mrow < rows else 0
    want = np.ones_like(a)
    want[mrow:, :mcols] = False
    if not np.array_equal(a, want):
        raise LayerCompileError("the softmax mask is not 'rows from r do not see columns "
                                "below c'; VSOFTMAX cannot express it")
    return mrow, mcols


def _row_parts(sym: Sym) -> list[Buf]:
    """The materialized row parts of ``sym`` (a Buf or a Cat of Bufs)."""
    parts = sym.parts if isinstance(sym, Cat) else [sym]
    for p in parts:
        if not isinstance(p, Buf):
            raise LayerCompileError(f"operand part {type(p).__name__} is not in VMEM")
    return parts


def input_layout(mc) -> Layout:
    """Row layout of the host's input rows: the residual stream's (folded) layout, or one
    plain row per feature vector with an input projection."""
    return Layout(1, mc.n_features) if mc.n_features else Layout(mc.fold_factor, mc.folded_dim)


class InstrOps:
    """The golden ops backend that emits instructions (see the module docstring)."""

    def __init__(self, mc: ModelConfig, p: AccelParams, em: Emitter, consts: ConstStore,
                 heap: Heap, fixed: Region, rings: dict[str, Ring]):
        self.mc, self.p, self.em, self.consts = mc, p, em, consts
        self.heap, self.fixed, self.rings = heap, fixed, rings
        self.res = Layout(mc.fold_factor, mc.folded_dim)   # the residual stream's rows
        self.inputs: list[tuple[int, int, Buf]] = []       # host rows lo..hi -> Buf
        self.elut_key: Any = None
        self.layer = -1
        self.param_uses: dict[str, int] = {}       # per op: parameter words made this layer
        #: called with the layer index when a layer begins (the compiler's state spilling)
        self.layer_hook: Callable[[int], None] | None = None

    # ------------------------------------------------------------------ plumbing
    def new_buf(self, rows: int, layout: Layout, dtype: str, region: Region | None = None,
                name: str = "") -> Buf:
        """A VMEM tensor: from the heap (freed with its last reference), or ``region``."""
        words = layout.words(self.p.cols)
        if region is not None:
            return Buf(region.alloc(max(1, rows) * words), rows, layout, words, dtype,
                       self.p.cols, name=name)
        block = self.heap.alloc(max(1, rows) * words)
        return Buf(block.addr, rows, layout, words, dtype, self.p.cols, name=name, alloc=block)

    @staticmethod
    def asarray(a: Any) -> Sym:
        arr = np.asarray(a)
        if arr.dtype == bool:
            return Mask(arr)
        return Const("", arr)

    @staticmethod
    def constant(name: str, a: np.ndarray) -> Const:
        return Const(name, np.asarray(a))

    @staticmethod
    def to_numpy(a: Any) -> np.ndarray:
        raise LayerCompileError("the instruction backend computes no values")

    @staticmethod
    def stack(parts: list) -> Trace:
        return Trace("stack")

    def begin_layer(self, layer: int) -> None:
        self.layer = layer
        self.param_uses = {}
        if self.layer_hook is not None:
            self.layer_hook(layer)

    def cat(self, parts: list[Sym], axis: int = 0) -> Sym:
        if axis == 1:
            return CatCols(list(parts))
        if any(isinstance(q, Input) for q in parts):
            return self._load_input(parts)
        return Cat(list(parts))

    def _load_input(self, parts: list[Sym]) -> Buf:
        """The host's rows (int16 d_model rows, or int8 features), in the order of
        ``parts``, into VMEM rows."""
        if not all(isinstance(q, Input) for q in parts):
            raise LayerCompileError("concatenating input rows with on-chip tensors")
        rows = sum(q.shape[0] for q in parts)
        features = self.mc.n_features > 0
        buf = self.new_buf(rows, input_layout(self.mc), "i8" if features else "i16",
                           self.fixed, "input rows")
        pos = 0
        for q in parts:
            n = q.shape[0]
            if n == 0:
                continue
            hi = q.lo + n
            self.em.load(VMEM, buf.addr + pos * buf.rstride, n * buf.rstride, ("input", q.lo, hi))
            self.inputs.append((q.lo, hi, buf.rows_slice(pos, pos + n)))
            pos += n
        return buf

    def _resolve(self, x: Sym) -> Buf:
        """A Buf for ``x`` (input rows already loaded are found by their host rows)."""
        if isinstance(x, Buf):
            return x
        if isinstance(x, Input):
            lo, hi = x.lo, x.lo + x.shape[0]
            for a, b, buf in self.inputs:
                if a <= lo and hi <= b:
                    return buf.rows_slice(lo - a, hi - a)
            raise LayerCompileError(f"input rows {lo}:{hi} were not loaded")
        raise LayerCompileError(f"{type(x).__name__} is not a tensor in VMEM")

    # ------------------------------------------------------------------ constants
    def _pmem_param(self, op: str, **values: int) -> int:
        """The PMEM parameter word of the ``k``-th ``op`` of this layer. Keyed by position,
        not value, so the program does not depend on the model's values (a timing-only
        compile of a model of zeros emits the same instructions); the values of a position
        must be the same in every segment."""
        k = self.param_uses.get(op, 0)
        self.param_uses[op] = k + 1
        key = ("param", self.layer, op, k)
        vals = tuple(sorted(values.items()))
        if self.consts.param_values.setdefault(key, vals) != vals:
            raise LayerCompileError(f"{op} #{k} of layer {self.layer} has parameters {vals} in "
                                    f"this segment, {self.consts.param_values[key]} before")
        words = lambda: host.pmem_bytes(  # noqa: E731
            formats.pack_param_word(op, self.p.cols, **values)[None])
        return self.consts.get(self.em, key, PMEM, words, 1)

    def _table(self, table: int, key: Any, entries: np.ndarray) -> None:
        """Load a lookup table into the vector unit (once while it stays loaded); its VMEM
        source is a resident table, or streamed into the heap."""
        if table == 0 and self.elut_key == key:
            return
        C = self.p.cols
        ckey = ("table", key)
        make = lambda: host.vmem_bytes(host.table_words(entries, C))  # noqa: E731
        block = None
        n = host.table_word_count(len(entries), C)
        if self.consts.resident[VMEM]:
            src = self.consts.get(self.em, ckey, VMEM, make, n)
        else:
            self.consts.register(ckey, VMEM, make, n)
            block = self.heap.alloc(n)             # freed once the VLUT is emitted
            src = block.addr
            self.em.load(VMEM, src, n, ("const", ckey))
        self.em.emit(isa.Instr("VLUT", {"table": table, "src": src}))
        del block
        if table == 0:
            self.elut_key = key

    # ------------------------------------------------------------------ vector ops
    def layernorm_i16(self, x: Sym, gamma: Const, beta: Const, m: int, s: int, eps: int = 0,
                      out_bits: int = 8) -> Buf:
        x = self._resolve(x)
        if not x.contiguous:
            raise LayerCompileError("LayerNorm of rows that are not contiguous")
        C, lay = self.p.cols, x.layout
        key = ("ln", gamma.name, out_bits)
        param = self.consts.get(self.em, key, PMEM, lambda: host.pmem_bytes(
            host.layernorm_words(gamma.value, beta.value, m, s, eps, out_bits == 16, lay, C)),
            1 + lay.words(C))
        out = self.new_buf(x.rows, lay, "i16" if out_bits == 16 else "i8")
        self.em.emit(isa.Instr("VLN", {"src": x.addr, "dst": out.addr, "rows": x.rows,
                                       "blocks": lay.blocks, "block": lay.block,
                                       "param": param}))
        return out

    def mean_pool_i8(self, x: Sym, axis: int = 0) -> Buf:
        x = self._resolve(x)
        off, m, s, post = mean_pool_params(x.rows)
        return self._vsum(x, self._pmem_param("VSUM", off=off, m=m, s=s, post=post),
                          VSUM_OUT["VMEM8"], "i8")

    def sum_rows_i16(self, x: Sym, axis: int = 0) -> PendingColSum:
        return PendingColSum(self._resolve(x))

    def _vsum(self, x: Buf, param: int, out: int, dtype: str, dst: int | None = None) -> Buf:
        words = x.row_words
        if out == VSUM_OUT["ACC32"]:
            buf = replace(x, addr=dst, rows=1, rstride=words, vector=True, dtype="i32",
                          alloc=None)
        else:
            buf = replace(self.new_buf(1, x.layout, dtype), vector=True)
        self.em.emit(isa.Instr("VSUM", {"src": x.addr, "stride": x.rstride, "rows": x.rows,
                                        "words": words, "dst": buf.addr, "out": out,
                                        "param": param}))
        return buf

    def add_requant_i16(self, a: Sym, b: Sym, m_a: int, m_b: int, s: int,
                        relu: bool = False) -> Buf:
        a, b = self._resolve(a), self._resolve(b)
        if a.layout != b.layout or a.rows != b.rows or not (a.contiguous and b.contiguous):
            raise LayerCompileError("residual add of tensors in different row layouts")
        param = self._pmem_param("VADD", m_a=m_a, m_b=m_b, s=s, relu=int(relu))
        out = self.new_buf(a.rows, a.layout, "i16")
        self.em.emit(isa.Instr("VADD", {"a": a.addr, "b": b.addr, "dst": out.addr,
                                        "count": a.rows * a.row_words, "param": param}))
        return out

    def softmax_u8(self, scores: Sym, exp_lut: Const, mask: Mask | None = None) -> Buf:
        x = self._resolve(scores)
        rows, ncols = x.shape
        mrow, mcols = (rows, 0) if mask is None else _mask_pattern(mask.allowed)
        self._table(0, ("exp", exp_lut.name), exp_lut.value)
        out = self.new_buf(rows, x.layout, "p8")
        self.em.emit(isa.Instr("VSOFTMAX", {"src": x.addr, "dst": out.addr, "rows": rows,
                                            "words": x.row_words, "ncols": ncols,
                                            "mrow": mrow, "mcols": mcols}))
        return out

    @staticmethod
    def u8_to_i8(p: Sym) -> Buf:
        if not (isinstance(p, Buf) and p.dtype == "p8"):
            raise LayerCompileError("u8_to_i8 of something that is not a softmax output")
        return replace(p, dtype="i8")

    @staticmethod
    def zero_point_bias(v: Sym) -> PendingZeroPoint:
        return PendingZeroPoint(v)

    def clamp_i8(self, x: Sym, lo: int, hi: int) -> Buf:
        if not isinstance(x, PendingRequant):
            raise LayerCompileError("clamp_i8 of something that is not a requantized tensor")
        param = self._pmem_param("VSQUASH", mode=0, m=x.m, s=x.s, lo=lo, hi=hi)
        return self._squash(x.x, param)

    def lut_i8(self, x: Sym, lut: Const) -> Buf:
        x = self._resolve(x)
        self._table(0, ("lut", lut.name), lut.value)
        return self._squash(x, self._pmem_param("VSQUASH", mode=1))

    def _squash(self, x: Buf, param: int) -> Buf:
        if not x.contiguous:
            raise LayerCompileError("squash of rows that are not contiguous")
        out = replace(self.new_buf(x.rows, x.layout, "i8"), vector=x.vector)
        self.em.emit(isa.Instr("VSQUASH", {"src": x.addr, "dst": out.addr,
                                           "count": x.rows * x.row_words, "param": param}))
        return out

    # ------------------------------------------------------------------ rings
    @staticmethod
    def ring_view(buf: Buf, head: int, count: int) -> Buf:
        if count == buf.rows:
            return buf                               # physical slot order (see compiler)
        if head != count:
            raise LayerCompileError(f"ring with head {head} and count {count} < capacity")
        return buf.rows_slice(0, count)

    def ring_push(self, buf: Buf, head: int, count: int, rows: Sym) -> tuple[Buf, int, int]:
        cap = buf.rows
        rows = self._resolve(rows)
        n = rows.rows
        if cap == 0:
            return buf, 0, 0
        if rows.layout != buf.layout or not (rows.contiguous and buf.contiguous):
            raise LayerCompileError("ring rows in another row layout")
        w = buf.row_words
        i = max(0, n - cap)
        while i < n:
            slot = (head + i) % cap
            run = min(n - i, cap - slot)
            src, dst = rows.addr + i * w, buf.addr + slot * w
            if src != dst:
                self.em.emit(isa.Instr("MCOPY", {"src": src, "dst": dst, "count": run * w,
                                                 "bank": 0, "stride": 1}))
            i += run
        return buf, (head + n) % cap, min(cap, count + n)

    # ------------------------------------------------------------------ GEMM
    @staticmethod
    def gemm_i32(a: Sym, b: Sym, bias: Sym | None = None) -> PendingGemm:
        return PendingGemm(a, b, bias)

    def requantize_i16(self, acc: Sym, m: Any, s: Any, relu: bool = False) -> Buf:
        if isinstance(acc, PendingGemm):
            return self._gemm(acc, m, s, relu, out16=True)
        raise LayerCompileError(f"requantize_i16 of {type(acc).__name__}")

    def requantize(self, acc: Sym, m: Any, s: Any, relu: bool = False) -> Any:
        if isinstance(acc, PendingGemm):
            return self._gemm(acc, m, s, relu)
        if isinstance(acc, PendingColSum):
            return self._vsum(acc.x, self._pmem_param("VSUM", m=int(m), s=int(s)),
                              VSUM_OUT["VMEM8"], "i8")
        if isinstance(acc, Buf) and acc.dtype == "i8":
            return PendingRequant(acc, int(m), int(s))
        raise LayerCompileError(f"requantize of {type(acc).__name__}")

    def _out_layout(self, n: int, b: Sym) -> Layout:
        mc = self.mc
        if isinstance(b, Const) and b.name.rsplit(".", 2)[-2:-1] in (["q"], ["k"], ["v"]):
            return Layout(mc.attn_heads, mc.head_dim)
        if n == mc.d_model:
            return self.res
        return Layout(1, n)

    def _gemm(self, g: PendingGemm, m: Any, s: Any, relu: bool, out16: bool = False) -> Buf:
        C, R = self.p.cols, self.p.rows
        M, K = g.a.shape
        N = g.b.shape[1]
        lay = self._out_layout(N, g.b)
        tiles = host.tile_columns(lay, C)
        self.em.gemms.append((M, K, N))
        act = self._stage_a(g.a, M, K)
        out = self.new_buf(M, lay, "i16" if out16 else "i8")
        per_tensor = self._value(m).size == 1 and self._value(s).size == 1
        plan = Layout(1, 1) if per_tensor else lay       # one word serves every tile
        param_key = ("requant", self._key_of(m), self._key_of(s), plan)
        params = self.consts.get(self.em, param_key, ACC, lambda: host.acc_bytes(
            host.param_words(np.full(C, self._value(m).reshape(-1)[0]) if per_tensor
                             else self._value(m),
                             np.full(C, self._value(s).reshape(-1)[0]) if per_tensor
                             else self._value(s), Layout(1, C) if per_tensor else lay, C)),
            1 if per_tensor else len(tiles))
        step = 0 if per_tensor else 1
        bias_addr = self._bias(g.bias, lay)
        b_tile = self._stage_b(g.b, K, lay)
        for j in range(len(tiles)):
            wgt = b_tile(j)
            for i, a_addr in enumerate(act):
                acc = self.rings["acc"].alloc(R)
                mode = "OVERWRITE" if bias_addr is None else "BIAS"
                self.em.emit(isa.matmul(a_addr, wgt, acc, K, mode,
                                        0 if bias_addr is None else bias_addr + j))
                rows = min(R, M - i * R)
                self.em.emit(isa.Instr("REQUANT", {
                    "src": acc, "dst": out.addr + i * R * out.rstride + j,
                    "param": params + step * j, "rows": rows, "relu": int(relu),
                    "out": REQUANT_OUT["VMEM16" if out16 else "VMEM8"],
                    "dstride": out.rstride}))
        return out

    @staticmethod
    def _key_of(v: Any) -> Any:
        """A constant's identity for placement: its name (the quantized model's tensors)."""
        if isinstance(v, Const) and v.name:
            return v.name
        return tuple(np.asarray(getattr(v, "value", v)).reshape(-1).tolist())

    @staticmethod
    def _value(v: Any) -> np.ndarray:
        return np.asarray(v.value if isinstance(v, Const) else v)

    def _bias(self, bias: Sym | None, lay: Layout) -> int | None:
        """ACC address of the first bias word (one per output tile), or None."""
        C = self.p.cols
        if bias is None:
            return None
        if isinstance(bias, Const):
            return self.consts.get(self.em, ("bias", bias.name, lay), ACC, lambda: host.acc_bytes(
                host.bias_words(bias.value, lay, C)), len(host.tile_columns(lay, C)))
        if isinstance(bias, PendingZeroPoint):
            return self._zero_point(bias.v)
        raise LayerCompileError(f"GEMM bias {type(bias).__name__}")

    def _zero_point(self, v: Sym) -> int:
        """ACC address of P@V's zero-point bias words, ``128 * colsum(v)`` (one per word of
        ``v``'s rows). ``v`` in one part: one VSUM. In several (one head of the values'
        parts): per word column, MCOPYs gather the column of every part (MCOPY reads it
        with the rows' stride) and a VSUM sums it -- a few instructions, not one per row."""
        parts = _row_parts(v)
        w = parts[0].row_words
        dst = self.rings["acc_const"].alloc(w)
        param = self._pmem_param("VSUM", m=256, s=1)
        if len(parts) == 1:
            self._vsum(parts[0], param, VSUM_OUT["ACC32"], "i32", dst)
            return dst
        if any(q.row_words != w for q in parts):
            raise LayerCompileError("zero-point bias of parts in different row layouts")
        rows = sum(q.rows for q in parts)
        block = self.heap.alloc(rows * w)                 # column c at block + c * rows
        for c in range(w):
            pos = 0
            for q in parts:
                self.em.emit(isa.Instr("MCOPY", {"src": q.addr + c, "stride": q.rstride,
                                                 "count": q.rows, "bank": 0,
                                                 "dst": block.addr + c * rows + pos}))
                pos += q.rows
            self.em.emit(isa.Instr("VSUM", {"src": block.addr + c * rows, "stride": 1,
                                            "rows": rows, "words": 1, "dst": dst + c,
                                            "out": VSUM_OUT["ACC32"], "param": param}))
        del block
        return dst

    def _stage_a(self, a: Sym, M: int, K: int) -> list[int]:
        """K-major A tiles in ACT (one per ``rows`` rows of ``a``): MTRANS of every part."""
        R, C = self.p.rows, self.p.cols
        ntiles = -(-M // R)
        base = self.rings["act"].alloc(ntiles * K)
        cols_parts = a.parts if isinstance(a, CatCols) else [a]
        c_off = 0
        for cp in cols_parts:
            pos = 0
            for buf in _row_parts(cp):
                bw = buf.layout.block_words(C)
                r = 0
                while r < buf.rows:
                    tile, boff = divmod(pos + r, R)
                    n = min(buf.rows - r, R - boff)
                    for blk in range(buf.layout.blocks):
                        self.em.emit(isa.Instr("MTRANS", {
                            "src": buf.addr + r * buf.rstride + blk * bw,
                            "stride": buf.rstride, "rows": n, "ncols": buf.layout.block,
                            "bank": 0, "dst": base + tile * K + c_off + blk * buf.layout.block,
                            "boff": boff}))
                    r += n
                pos += buf.rows
            c_off += cp.shape[1]
        return [base + t * K for t in range(ntiles)]

    def _stage_b(self, b: Sym, K: int, lay: Layout) -> Callable[[int], int]:
        """A function: output tile ``j`` -> WGT address of its ``K`` B words (prepared when
        asked: weights LOADed or resident, K^T transposed, V copied)."""
        C = self.p.cols
        if isinstance(b, Const):
            tiles = functools.cache(lambda: host.weight_tiles(b.value, lay, C))
            return lambda j: self.consts.get(self.em, ("weight", b.name, lay, j), WGT,
                                              lambda: host.wgt_bytes(tiles()[j]), K)
        if isinstance(b, Transposed):                 # K^T: keys across the word's bytes
            parts = _row_parts(b.base)

            def kt_tile(j: int) -> int:
                addr = self.rings["wgt"].alloc(K)
                pos = 0
                for buf in parts:
                    lo, hi = max(pos, j * C), min(pos + buf.rows, (j + 1) * C)
                    if lo < hi:
                        self.em.emit(isa.Instr("MTRANS", {
                            "src": buf.addr + (lo - pos) * buf.rstride, "stride": buf.rstride,
                            "rows": hi - lo, "ncols": buf.layout.cols, "bank": 1,
                            "dst": addr, "boff": lo - j * C}))
                    pos += buf.rows
                return addr
            return kt_tile
        parts = _row_parts(b)                          # V: rows are the K words

        def v_tile(j: int) -> int:
            addr = self.rings["wgt"].alloc(K)
            pos = 0
            for buf in parts:
                self.em.emit(isa.Instr("MCOPY", {"src": buf.addr + j, "dst": addr + pos,
                                                 "count": buf.rows, "bank": 1,
                                                 "stride": buf.rstride}))
                pos += buf.rows
            return addr
        return v_tile


__all__ = ["Alloc", "ConstStore", "Emitter", "Heap", "InstrOps", "Region", "Ring"]
