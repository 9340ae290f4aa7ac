"""The layer compiler: one streaming step of the encoder as an accelerator program.

:class:`StreamCompiler` lowers ``model.golden.GoldenEncoder.infer`` -- the golden model's own
dataflow, run on the instruction backend (``hw/layer/backend.py``) -- for a config and a
quantized model into:

* a **preload program** (once, before the first segment): the rsqrt table and every
  resident constant (weights, bias/requantization words, LayerNorm and op parameters,
  tables), per bank where they all fit;
* a **step program** per segment: LOADs of the segment's int16 input rows (and of the
  constants that are streamed), the whole encoder step on chip, and one STORE of the last
  layer's output rows. Each layer's memory-bank ring and left-context key/value rings live in
  VMEM across segments (the program updates them); programs differ between segments only
  while the rings fill and in the slots the rings' heads point at, so they are cached by
  ``(mem_head, mem_count, lc_head, lc_count)``;
* a **readback program** that STOREs the rings (only to check them).

Ring order: once a ring is full the program reads its slots in physical order, where the
golden model reads them oldest first; softmax, P@V and the mean are invariant under a
permutation of the keys (integer sums, a row max), so every output is bit-identical.

The data of the programs is packed by the host (:meth:`StreamCompiler.din`) from the
quantized model and the segment's input rows; the host does no arithmetic.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hw import isa
from hw.hostio import words_to_beats
from hw.layer import host
from hw.layer.backend import ConstStore, Emitter, Heap, InstrOps, Region, Ring
from hw.layer.symbols import Buf, Input, LayerCompileError, Layout
from hw.program import Program
from hw.uarch import ACC, ACT, MAX_BANK_WORDS, PMEM, VMEM, WGT, as_params
from model import intops
from model.config import Config
from model.golden import GoldenEncoder, GoldenState, LayerState
from model.quantize import QuantModel, tensor_specs

#: Accumulator tiles kept in flight (ACC ring), in tiles of ``rows`` words.
ACC_SLOTS = 8
#: Words of ACC for GEMM parameter words that are computed or streamed (ring).
ACC_CONST_WORDS = 64
#: The constant key of the rsqrt table's VMEM source (the backend uses the same).
RSQRT_KEY = ("table", "rsqrt")


@dataclass
class StepProgram:
    """One compiled step: the program, where its LOADs' data come from, its output rows."""

    program: Program
    sources: list[tuple[Any, int, int]]
    out: Buf
    key: tuple[int, int, int, int]


@dataclass
class Rings:
    """Per layer: the memory-bank ring and the left-context key and value rings."""

    memory: list[Buf] = field(default_factory=list)
    key: list[Buf] = field(default_factory=list)
    value: list[Buf] = field(default_factory=list)


def phantom_model(cfg: Config) -> QuantModel:
    """A quantized model of ``cfg``'s shape with zero tensors: enough to compile programs for
    their timing and traffic (the instructions do not depend on the weights' values)."""
    tensors = {}
    for name, (shape, dtype) in tensor_specs(cfg).items():
        arr = np.zeros(shape, dtype)
        if name.endswith((".s", ".m")) and shape == (1,):
            arr[:] = 1
        tensors[name] = arr
    return QuantModel(cfg, 0, tensors, {}, {})


def ring_state(mc, segment: int) -> tuple[int, int, int, int]:
    """``(mem_head, mem_count, lc_head, lc_count)`` at the start of ``segment``."""
    cap = mc.left_context * mc.fold_factor
    pushed = segment * mc.segment_length * mc.fold_factor
    m = mc.max_memory
    return (segment % m, min(segment, m), pushed % cap if cap else 0, min(pushed, cap))


class StreamCompiler:
    """Programs for streaming a quantized model's encoder on the accelerator of ``cfg``.

    ``layers``: compile the first ``layers`` layers only (default all)."""

    def __init__(self, cfg: Config, qm: QuantModel | None = None, layers: int | None = None):
        self.cfg = cfg
        self.mc = cfg.model
        self.qm = qm if qm is not None else phantom_model(cfg)
        self.p = as_params(cfg.hardware)
        self.layers = self.mc.n_layers if layers is None else layers
        if not 1 <= self.layers <= self.mc.n_layers:
            raise LayerCompileError(f"layers={layers} must be in 1..{self.mc.n_layers}")
        self._steps: dict[tuple, StepProgram] = {}
        self._plan()

    # ------------------------------------------------------------------ bank plan
    def _regions(self, resident: dict[int, bool], sizes: dict[int, int],
                 measure: bool = False) -> None:
        """Resident regions of ``sizes`` words at the bottom of each bank, rings above; VMEM:
        resident tables, the rings, the input rows, then the heap of the step's tensors."""
        p, mc = self.p, self.mc
        R = p.rows
        self.regions = {b: Region(b, 0, sizes.get(b, 0) if resident[b] else 0, "resident "
                                  "constants", measure) for b in (WGT, ACC, PMEM, VMEM)}
        acc_base = self.regions[ACC].end
        self.rings = {
            "act": Ring(ACT, 0, p.act_depth, "the A operand tiles of one GEMM"),
            "wgt": Ring(WGT, self.regions[WGT].end, p.wgt_depth, "one B operand tile"),
            "acc": Ring(ACC, acc_base, acc_base + ACC_SLOTS * R, "the accumulator tiles"),
            "acc_const": Ring(ACC, acc_base + ACC_SLOTS * R, p.acc_depth,
                              "one GEMM's bias and parameter words"),
            "pmem": Ring(PMEM, self.regions[PMEM].end, p.pmem_depth, "one op's parameters"),
        }
        if acc_base + ACC_SLOTS * R + ACC_CONST_WORDS > p.acc_depth:
            raise LayerCompileError(
                f"the ACC bank is too small: resident constants ({acc_base} words), "
                f"{ACC_SLOTS} accumulator tiles and {ACC_CONST_WORDS} parameter words need "
                f"{acc_base + ACC_SLOTS * R + ACC_CONST_WORDS} words, it has {p.acc_depth}; "
                "fix: raise acc_sram_kib")
        fixed = Region(VMEM, self.regions[VMEM].end, p.vmem_depth, "the streaming state")
        res = Layout(mc.fold_factor, mc.folded_dim)
        kv = Layout(mc.attn_heads, mc.head_dim)
        cap = mc.left_context * mc.fold_factor
        rings = Rings()
        C = p.cols

        def ring(rows: int, lay: Layout) -> Buf:
            w = lay.words(C)
            return Buf(fixed.alloc(rows * w), rows, lay, w, "i8", C)

        for _ in range(self.layers):
            rings.memory.append(ring(mc.max_memory, res))
            rings.key.append(ring(cap, kv))
            rings.value.append(ring(cap, kv))
        self.state_words = fixed.top - fixed.base
        self.input_words = (mc.segment_length + mc.right_context) * res.words(C)
        free = p.vmem_depth - fixed.top - self.input_words
        if free < 2 and not measure:
            raise LayerCompileError(
                f"the VMEM bank is too small: the streaming state needs {self.state_words} "
                f"words and the input rows {self.input_words}, it has "
                f"{p.vmem_depth - fixed.base} after the tables; fix: raise vmem_kib")
        self.fixed = fixed
        self.ring_bufs = rings
        self.heap_base = fixed.top + self.input_words
        self.heap_high = self.heap_base
        self.resident = resident
        self.consts = ConstStore(resident, self.regions,
                                 {WGT: self.rings["wgt"], ACC: self.rings["acc_const"],
                                  PMEM: self.rings["pmem"]})
        if resident[VMEM]:                 # the rsqrt table's source is a resident table too
            self.consts.get(None, RSQRT_KEY, VMEM, _rsqrt_words(C))

    def _plan(self) -> None:
        """Decide, per bank, whether its constants are resident: compile segment 0 with every
        constant resident in unbounded regions, measure, keep resident what fits."""
        p = self.p
        depth = {WGT: p.wgt_depth, ACC: p.acc_depth, PMEM: p.pmem_depth, VMEM: p.vmem_depth}
        top = MAX_BANK_WORDS - 1                   # the largest address a field can hold
        big = dict.fromkeys(depth, top // 2)
        probe = dataclasses.replace(p, **dict.fromkeys(("wgt_depth", "acc_depth",
                                                        "pmem_depth", "vmem_depth"), top))
        real = self.p
        self.p = probe
        self._regions(dict.fromkeys(depth, True), big, measure=True)
        self._compile(0)
        used = {b: self.consts.words(b) for b in depth}
        heap = self.heap_high - self.heap_base
        wgt_ring = self.rings["wgt"].biggest
        self.p = real
        self._steps.clear()
        state = self.state_words + self.input_words
        fits = {
            WGT: used[WGT] + 2 * wgt_ring <= depth[WGT],
            ACC: used[ACC] + ACC_SLOTS * p.rows + ACC_CONST_WORDS <= depth[ACC],
            PMEM: used[PMEM] + 2 * self.rings["pmem"].biggest <= depth[PMEM],
            VMEM: used[VMEM] + state + heap <= depth[VMEM],
        }
        self._regions(fits, used)
        self._steps[ring_state(self.mc, 0)] = self._compile(0)   # places every constant
        self.consts.frozen = True

    # ------------------------------------------------------------------ programs
    def state(self, segment: int) -> GoldenState:
        mh, mcnt, lh, lcnt = ring_state(self.mc, segment)
        r = self.ring_bufs
        return GoldenState(tuple(LayerState(r.memory[i], mh, mcnt, r.key[i], r.value[i], lh,
                                            lcnt) for i in range(self.layers)), segment)

    def step(self, segment: int) -> StepProgram:
        """The program of ``segment`` (cached by the rings' state)."""
        key = ring_state(self.mc, segment)
        if key not in self._steps:
            self._steps[key] = self._compile(segment)
        return self._steps[key]

    def _compile(self, segment: int) -> StepProgram:
        mc, p = self.mc, self.p
        em = Emitter(p)
        heap = Heap(VMEM, self.heap_base, p.vmem_depth, "the step's tensors")
        input_region = Region(VMEM, self.fixed.top, self.heap_base, "the input rows")
        ops = InstrOps(mc, p, em, self.consts, heap, input_region,
                       {"act": self.rings["act"], "wgt": self.rings["wgt"],
                        "acc": self.rings["acc"], "acc_const": self.rings["acc_const"]})
        gold = GoldenEncoder(self.qm, ops)
        chunk = Input(mc.segment_length + mc.right_context, mc.d_model)
        out, _, _ = gold.infer(chunk, self.state(segment))
        if not out.contiguous:
            raise LayerCompileError("output rows are not contiguous")
        em.store(VMEM, out.addr, out.rows * out.row_words, "out")
        self.heap_high = max(self.heap_high, heap.high)
        out.alloc = None
        return StepProgram(em.b.finish(), em.sources, out, ring_state(mc, segment))

    def preload(self) -> StepProgram:
        """The program run once before the first segment: the resident constants, then the
        rsqrt table into the vector unit (its source is a resident table, or the arena)."""
        em = Emitter(self.p)
        for key, (bank, addr, n) in self.consts.placed.items():
            em.load(bank, addr, n, ("const", key))
        if self.resident[VMEM]:
            src = self.consts.placed[RSQRT_KEY][1]
        else:
            src = self.heap_base
            words = _rsqrt_words(self.p.cols)()
            self.consts.data[RSQRT_KEY] = words
            em.load(VMEM, src, len(words), ("const", RSQRT_KEY))
        em.emit(isa.Instr("VLUT", {"table": 1, "src": src}))
        return StepProgram(em.b.finish(), em.sources, None, (-1, -1, -1, -1))

    def readback(self) -> StepProgram:
        """STOREs of every ring (memory, then key and value, per layer)."""
        em = Emitter(self.p)
        r = self.ring_bufs
        for i in range(self.layers):
            for tag, buf in (("memory", r.memory[i]), ("key", r.key[i]), ("value", r.value[i])):
                if buf.rows:
                    em.store(VMEM, buf.addr, buf.rows * buf.row_words, f"L{i}.{tag}")
        return StepProgram(em.b.finish(), em.sources, None, (-1, -1, -1, -1))

    # ------------------------------------------------------------------ host data
    def din(self, step: StepProgram, chunk: np.ndarray | None = None) -> np.ndarray:
        """The data-in stream of ``step``: the segment's rows (``chunk``, int16 ``(L+R, D)``)
        and the constants, in the order of its LOADs."""
        p, C = self.p, self.p.cols
        res = Layout(self.mc.fold_factor, self.mc.folded_dim)
        pieces = []
        for source, bank, count in step.sources:
            if source[0] == "input":
                if chunk is None:
                    raise LayerCompileError("the step loads input rows: pass the chunk")
                _, lo, hi = source
                words = host.vmem_bytes(host.rows_to_lanes(np.asarray(chunk)[lo:hi], res, C))
            else:
                words = self.consts.data[source[1]]
            if len(words) != count or words.shape[1] != p.word_bytes(bank):
                raise LayerCompileError(f"data of {source} is {words.shape}, the LOAD takes "
                                        f"{count} words of {p.word_bytes(bank)} bytes")
            pieces.append(words_to_beats(words, p.host_bytes))
        if not pieces:
            return np.zeros((0, p.host_bytes), np.uint8)
        return np.concatenate(pieces)

    def output_rows(self, step: StepProgram, dout: np.ndarray) -> np.ndarray:
        """The last layer's int16 output rows ``(L, D)`` of a step's data-out stream."""
        words = step.program.unpack(dout)["out"]
        lanes = np.ascontiguousarray(words).view("<i2").astype(np.int64)
        return host.lanes_to_rows(lanes, step.out.layout, self.p.cols)

    def rings_of(self, readback: StepProgram, dout: np.ndarray) -> dict[str, np.ndarray]:
        """``L{i}.memory/key/value`` -> the ring's rows (int8 values, golden layout)."""
        got = readback.program.unpack(dout)
        r = self.ring_bufs
        out = {}
        for i in range(self.layers):
            for tag, buf in (("memory", r.memory[i]), ("key", r.key[i]), ("value", r.value[i])):
                name = f"L{i}.{tag}"
                if name in got:
                    lanes = np.ascontiguousarray(got[name]).view("<i2").astype(np.int64)
                    out[name] = host.lanes_to_rows(lanes, buf.layout, self.p.cols)
        return out


def _rsqrt_words(cols: int):
    return lambda: host.vmem_bytes(host.table_words(intops.RSQRT_LUT, cols))


__all__ = ["StepProgram", "StreamCompiler", "phantom_model", "ring_state"]
