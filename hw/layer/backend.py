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
                    per tile (BIAS mode with the bias word; the first tile in parts along K),
                    REQUANT into VMEM rows (deferred: :class:`Emitter`)
softmax_u8          VSOFTMAX (mask: rows from ``mrow`` do not see columns below ``mcols``);
                    the layer's exp table is loaded (VLUT) during the FFN of the layer before
zero_point_bias     VSUM of V's rows (x128 into an ACC bias word; of each part's sums)
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
from hw.deps import regions
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
from hw.opspec import region_words
from hw.program import Program, ProgramBuilder
from hw.uarch import ACC, BANK_NAMES, PMEM, VMEM, WGT, AccelParams
from hw.vector import formats
from hw.vector.latency_arith import mean_pool_params
from hw.vector.ops import VSUM_OUT
from model.config import ModelConfig

#: A GEMM's first output tile is computed in ``K_PARTS`` parts along K of at least
#: ``K_PART_MIN * cols`` A columns each (:meth:`InstrOps._gemm`).
K_PARTS = 2
K_PART_MIN = 2

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
            n: int, load: bool = True) -> int:
        """Address of constant ``key`` of ``n`` words (``make()`` -> its words as bytes); a
        streamed one is LOADed whole unless ``load`` is false (:meth:`load_part`)."""
        self.register(key, bank, make, n)
        if self.resident[bank]:
            if key not in self.placed:
                if self.frozen:
                    raise LayerCompileError(f"constant {key} first used after the preload "
                                            "program was built")
                self.placed[key] = (bank, self.regions[bank].alloc(n), n)
            return self.placed[key][1]
        addr = self.rings[bank].alloc(n)
        if load:
            em.load(bank, addr, n, ("const", key))
        return addr

    @staticmethod
    def load_part(em: Emitter, key: Any, bank: int, addr: int, lo: int, hi: int) -> None:
        """LOAD words ``[lo, hi)`` of streamed constant ``key`` (placed at ``addr``)."""
        em.load(bank, addr + lo, hi - lo, ("const", key, lo, hi))

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
    carrying it: the same program serves every segment, packed with each one's input.

    Instructions given to :meth:`defer` (a GEMM's REQUANTs) are held back and emitted just
    before the next MATMUL or the next instruction that touches their words, so vector and
    mover work emitted in between goes first on the VMEM ports they share."""

    def __init__(self, p: AccelParams, track: bool = True):
        self.p = p
        self.b = ProgramBuilder(p, track)
        self.gemms: list[tuple[int, int, int]] = []     # (M, K, N) of the GEMMs emitted
        self.sources: list[tuple[Any, int, int]] = []   # (source, bank, words) per LOAD
        self.held: list[tuple[isa.Instr, set, set]] = []   # deferred: (ins, reads, writes)

    def emit(self, ins: isa.Instr) -> isa.Instr:
        self._release(ins)
        return self.b.emit(ins)

    def defer(self, ins: isa.Instr) -> None:
        reads, writes = regions(ins, self.p)
        self.held.append((ins, _words(reads), _words(writes)))

    def load(self, bank: int, addr: int, count: int, source: Any) -> None:
        self.emit(isa.load(bank, addr, count))
        self.sources.append((source, bank, count))

    def store(self, bank: int, addr: int, count: int, tag: str) -> None:
        self._release(None)
        self.b.store(bank, addr, count, tag)

    def finish(self) -> Program:
        self._release(None)
        return self.b.finish()

    def _release(self, ins: isa.Instr | None) -> None:
        """Emit the held instructions ``ins`` must follow (all of them before a MATMUL, or
        for ``None``: a STORE or the end), in the order they were deferred."""
        if not self.held:
            return
        if ins is None or ins.op == "MATMUL":
            cut = len(self.held)
        else:
            reads, writes = regions(ins, self.p)
            cut = max((k + 1 for k, (_, r, w) in enumerate(self.held)
                       if _touches(reads + writes, w) or _touches(writes, r)), default=0)
        release, self.held = self.held[:cut], self.held[cut:]
        for held, _, _ in release:
            self.b.emit(held)


def _words(regs: list) -> set[tuple[int, int]]:
    """The ``(bank, word)`` pairs of SRAM regions."""
    return {(r[0], w) for r in regs for w in range(*region_words(r).indices(r[2]))}


def _touches(regs: list, words: set[tuple[int, int]]) -> bool:
    """Whether SRAM regions contain one of ``words`` (a few words)."""
    for bank, w in words:
        for r in regs:
            if r[0] == bank and r[1] <= w < r[2] and (w - r[1]) % (r[3] if len(r) > 3 else 1) == 0:
                return True
    return False


def _k_chunks(pieces: list[list], K: int, least: int) -> list[tuple[int, int]]:
    """K ranges of the MATMULs of a GEMM's first output tile: cut where A's MTRANS pieces
    start, each at least ``least`` columns wide (the last joins its predecessor if shorter)."""
    cuts = sorted({k for tile in pieces for k, _ in tile} | {K})
    out: list[tuple[int, int]] = []
    lo = 0
    for c in cuts:
        if c - lo >= least:
            out.append((lo, c))
            lo = c
    if lo < K:
        out[-1:] = [(out[-1][0] if out else 0, K)]
    return out


#: Rows of one part of a zero-point sum: its int8 column sums must fit int16.
ZP_ROWS = 255


def exp_table(layer: int) -> tuple[str, str]:
    """The key of layer ``layer``'s softmax exp table (its tensor's name last); the
    constant of its VMEM words is keyed ``("table", key)``."""
    return ("exp", f"L{layer}.score.exp_lut")


def table_data(entries: np.ndarray, cols: int) -> tuple[Callable[[], np.ndarray], int]:
    """The maker of a lookup table's VMEM words (as bytes) and their count."""
    return (lambda: host.vmem_bytes(host.table_words(entries, cols)),
            host.table_word_count(len(entries), cols))


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
                 heap: Heap, fixed: Region, rings: dict[str, Ring], layers: int):
        self.mc, self.p, self.em, self.consts = mc, p, em, consts
        self.heap, self.fixed, self.rings = heap, fixed, rings
        self.layers = layers
        self.res = Layout(mc.fold_factor, mc.folded_dim)   # the residual stream's rows
        self.named: dict[str, Const] = {}                  # the quantized model's tensors
        #: the last GEMM's A operand and its ACT tiles (the next GEMM of the same A reuses them)
        self.staged: tuple[Sym, list[int]] | None = None
        self.inputs: list[tuple[int, int, Buf]] = []       # host rows lo..hi -> Buf
        self.elut_key: Any = exp_table(0)                  # a step starts with it loaded
        self.layer = -1
        self.param_uses: dict[str, int] = {}       # per op: parameter words made this layer
        #: called with the layer index when a layer begins, and with each ring pushed (the
        #: compiler's state spilling)
        self.layer_hook: Callable[[int], None] | None = None
        self.push_hook: Callable[[Buf], None] | None = None
        #: called between the output tiles of a weight GEMM once its A operand is staged (the
        #: VMEM ports idle), with whether the host input link idles too (for background
        #: transfers: the spilled state)
        self.tile_hook: Callable[[bool], None] | None = None

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

    def constant(self, name: str, a: np.ndarray) -> Const:
        self.named[name] = Const(name, np.asarray(a))
        return self.named[name]

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

    def end_step(self) -> None:
        """Leave the vector unit's tables as the next step starts: layer 0's exp table."""
        self._exp_table(0)

    def _exp_table(self, layer: int) -> None:
        """Load layer ``layer``'s softmax exp table into the ELUT (unless it is there)."""
        key = exp_table(layer)
        self._table(0, key, self.named[key[1]].value)

    def _table(self, table: int, key: Any, entries: np.ndarray) -> None:
        """Load a lookup table into the vector unit (once while it stays loaded); its VMEM
        source is a resident table, or streamed into the heap."""
        if table == 0 and self.elut_key == key:
            return
        ckey = ("table", key)
        make, n = table_data(entries, self.p.cols)
        block = None
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
        self.staged = None                  # a ring's rows may be in the staged A operand
        out = self._push(buf, head, count, self._resolve(rows))
        if self.push_hook is not None:
            self.push_hook(buf)
        return out

    def _push(self, buf: Buf, head: int, count: int, rows: Buf) -> tuple[Buf, int, int]:
        cap = buf.rows
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
        """MATMULs per output tile ``j`` and row tile ``i``, then its REQUANT (deferred). The
        first output tile's MATMULs (every tile's, for weights LOADed in parts) are split
        along K (:func:`_k_chunks`): each starts once its A columns are staged and its B
        words are there, while the next part is transposed or loaded."""
        R = self.p.rows
        M, K = g.a.shape
        N = g.b.shape[1]
        lay = self._out_layout(N, g.b)
        self.em.gemms.append((M, K, N))
        act, pieces = self._a_tiles(g.a, M, K)
        out = self.new_buf(M, lay, "i16" if out16 else "i8")
        params, step = self._requant_params(m, s, lay)
        bias_addr = self._bias(g.bias, lay)
        b_tile = self._stage_b(g.b, K, lay)
        parts = _k_chunks(pieces, K, self._k_chunk(K))
        weights = isinstance(g.b, Const)
        split_all = weights and self._wgt_ring_bound(K)
        for j in range(len(host.tile_columns(lay, self.p.cols))):
            for i, a_addr in enumerate(act):
                acc = self.rings["acc"].alloc(R)
                for c, (lo, hi) in enumerate(parts if j == 0 or split_all else [(0, K)]):
                    while pieces[i] and pieces[i][0][0] < hi:     # A columns this part reads
                        self.em.emit(pieces[i].pop(0)[1])
                    wgt = b_tile(j, hi)
                    if weights and j and not i and not c and self.tile_hook is not None:
                        self.tile_hook(len(act) > 1 or self.consts.resident[WGT])
                    mode = "ACCUMULATE" if c else "OVERWRITE" if bias_addr is None else "BIAS"
                    self.em.emit(isa.matmul(a_addr + lo, wgt + lo, acc, hi - lo, mode,
                                            0 if mode != "BIAS" else bias_addr + j))
                self.em.defer(isa.Instr("REQUANT", {
                    "src": acc, "dst": out.addr + i * R * out.rstride + j,
                    "param": params + step * j, "rows": min(R, M - i * R), "relu": int(relu),
                    "out": REQUANT_OUT["VMEM16" if out16 else "VMEM8"],
                    "dstride": out.rstride}))
            if j == 0:
                self._prefetch_table(g.b)
        return out

    def _k_chunk(self, K: int) -> int:
        """Columns of A per part of a K-split GEMM tile (:data:`K_PARTS`)."""
        C = self.p.cols
        return max(K_PART_MIN * C, -(-K // (K_PARTS * C)) * C)

    def _wgt_ring_bound(self, K: int) -> bool:
        """Weights streamed in tiles of ``K`` words so large that the WGT ring holds few: a
        tile's LOAD would wait for the MATMULs of the one before last (loaded in parts)."""
        ring = self.rings["wgt"]
        return not self.consts.resident[WGT] and ring.end - ring.base < 4 * K

    def _requant_params(self, m: Any, s: Any, lay: Layout) -> tuple[int, int]:
        """ACC address of the REQUANT parameter words and their step per output tile (one
        word serves every tile for per-tensor parameters)."""
        C = self.p.cols
        per_tensor = self._value(m).size == 1 and self._value(s).size == 1
        plan = Layout(1, 1) if per_tensor else lay
        key = ("requant", self._key_of(m), self._key_of(s), plan)
        addr = self.consts.get(self.em, key, ACC, lambda: host.acc_bytes(
            host.param_words(np.full(C, self._value(m).reshape(-1)[0]) if per_tensor
                             else self._value(m),
                             np.full(C, self._value(s).reshape(-1)[0]) if per_tensor
                             else self._value(s), Layout(1, C) if per_tensor else lay, C)),
            1 if per_tensor else len(host.tile_columns(lay, C)))
        return addr, 0 if per_tensor else 1

    def _prefetch_table(self, b: Sym) -> None:
        """Once the FFN's first GEMM has its A operand staged (the vector unit idles while it
        runs), load the next layer's exp table, unless a memory squash table comes first."""
        if not (isinstance(b, Const) and b.name == f"L{self.layer}.fc1.weight"):
            return
        nxt = (self.layer + 1) % self.layers                # layer 0: of the next step
        if f"L{nxt}.mem_in.lut" not in self.named:
            self._exp_table(nxt)

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
        parts): a VSUM of each part's int16 column sums, then a VSUM of those."""
        parts = _row_parts(v)
        w = parts[0].row_words
        dst = self.rings["acc_const"].alloc(w)
        param = self._pmem_param("VSUM", m=256, s=1)
        exact = self._pmem_param("VSUM", m=2, s=1)       # the sum itself (every segment)
        if len(parts) == 1:
            self._vsum(parts[0], param, VSUM_OUT["ACC32"], "i32", dst)
            return dst
        if any(q.row_words != w for q in parts) or max(q.rows for q in parts) > ZP_ROWS:
            raise LayerCompileError("zero-point bias of parts in different row layouts or "
                                    f"of more than {ZP_ROWS} rows")
        block = self.heap.alloc(len(parts) * w)           # part k's sums at block + k * w
        for k, q in enumerate(parts):
            self.em.emit(isa.Instr("VSUM", {"src": q.addr, "stride": q.rstride, "rows": q.rows,
                                            "words": w, "dst": block.addr + k * w,
                                            "out": VSUM_OUT["VMEM16"], "param": exact}))
        self.em.emit(isa.Instr("VSUM", {"src": block.addr, "stride": w, "rows": len(parts),
                                        "words": w, "dst": dst, "out": VSUM_OUT["ACC32"],
                                        "param": param}))
        del block
        return dst

    def _a_tiles(self, a: Sym, M: int, K: int) -> tuple[list[int], list[list]]:
        """K-major A tiles in ACT (one per ``rows`` rows of ``a``) and, per tile, the MTRANS
        instructions that fill them as ``(first K column, instruction)`` in column order, not
        yet emitted: every part's blocks, split every :meth:`_k_chunk` columns. The A operand
        of the GEMM before (the keys' and the values' projections share theirs) is reused."""
        R, C = self.p.rows, self.p.cols
        chunk = self._k_chunk(K)
        ntiles = -(-M // R)
        if self.staged is not None and self.staged[0] is a:   # the last GEMM's A (K, V)
            return self.staged[1], [[] for _ in range(ntiles)]
        base = self.rings["act"].alloc(ntiles * K)
        pieces: list[list] = [[] for _ in range(ntiles)]
        cols_parts = a.parts if isinstance(a, CatCols) else [a]
        c_off = 0
        for cp in cols_parts:
            pos = 0
            for buf in _row_parts(cp):
                lay = buf.layout
                bw = lay.block_words(C)
                r = 0
                while r < buf.rows:
                    tile, boff = divmod(pos + r, R)
                    n = min(buf.rows - r, R - boff)
                    for blk in range(lay.blocks):
                        for lo in range(0, lay.block, chunk):
                            k = c_off + blk * lay.block + lo
                            pieces[tile].append((k, isa.Instr("MTRANS", {
                                "src": buf.addr + r * buf.rstride + blk * bw + lo // C,
                                "stride": buf.rstride, "rows": n,
                                "ncols": min(chunk, lay.block - lo), "bank": 0,
                                "dst": base + tile * K + k, "boff": boff})))
                    r += n
                pos += buf.rows
            c_off += cp.shape[1]
        for tile in pieces:
            tile.sort(key=lambda piece: piece[0])
        self.staged = (a, [base + t * K for t in range(ntiles)])
        return self.staged[1], pieces

    def _stage_b(self, b: Sym, K: int, lay: Layout) -> Callable[[int, int], int]:
        """A function: ``(j, hi)`` -> WGT address of output tile ``j``'s ``K`` B words with
        words ``[0, hi)`` ready: weights resident or LOADed as far as asked, K^T transposed
        and V copied whole on the first ask."""
        if isinstance(b, Const):
            return self._weight_tiles(b, K, lay)
        parts = _row_parts(b.base if isinstance(b, Transposed) else b)
        stage = self._kt_tile if isinstance(b, Transposed) else self._v_tile
        staged = functools.cache(lambda j: stage(parts, K, j))
        return lambda j, hi: staged(j)

    def _weight_tiles(self, b: Const, K: int, lay: Layout) -> Callable[[int, int], int]:
        """:meth:`_stage_b` of a weight matrix (a streamed tile is LOADed in parts)."""
        tiles = functools.cache(lambda: host.weight_tiles(b.value, lay, self.p.cols))
        ready: dict[int, tuple[int, int]] = {}      # tile -> (address, words loaded)

        def tile(j: int, hi: int) -> int:
            key = ("weight", b.name, lay, j)
            addr, upto = ready.get(j, (None, 0))
            if addr is None:
                addr = self.consts.get(self.em, key, WGT, lambda: host.wgt_bytes(tiles()[j]),
                                       K, load=hi == K)
                upto = K if hi == K or self.consts.resident[WGT] else 0
            if upto < hi:
                self.consts.load_part(self.em, key, WGT, addr, upto, hi)
                upto = hi
            ready[j] = (addr, upto)
            return addr
        return tile

    def _kt_tile(self, parts: list[Buf], K: int, j: int) -> int:
        """K^T tile ``j`` (keys ``j*cols`` on, across the words' bytes) transposed into WGT."""
        C = self.p.cols
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

    def _v_tile(self, parts: list[Buf], K: int, j: int) -> int:
        """V tile ``j`` (word column ``j`` of the rows, one row per K word) copied into WGT."""
        addr = self.rings["wgt"].alloc(K)
        pos = 0
        for buf in parts:
            self.em.emit(isa.Instr("MCOPY", {"src": buf.addr + j, "dst": addr + pos,
                                             "count": buf.rows, "bank": 1,
                                             "stride": buf.rstride}))
            pos += buf.rows
        return addr


__all__ = ["Alloc", "ConstStore", "Emitter", "Heap", "InstrOps", "Region", "Ring"]
