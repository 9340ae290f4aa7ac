"""The layer compiler: one streaming step of the encoder as an accelerator program.

:class:`StreamCompiler` lowers ``model.golden.GoldenEncoder.infer`` -- the golden model's own
dataflow, run on the instruction backend (``hw/layer/backend.py``) -- for a config and a
quantized model into:

* a **preload program** (once, before the first segment): every resident constant
  (weights, bias/requantization words, LayerNorm and op parameters, tables), per bank where
  they all fit, and the tables every step starts with: the rsqrt table and layer 0's exp
  table (each step leaves the latter loaded for the next);
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
from hw.layer.backend import (
    ConstStore,
    Emitter,
    Heap,
    InstrOps,
    Region,
    Ring,
    exp_table,
    input_layout,
    table_data,
)
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
#: Words of one LOAD/STORE of the spilled state (see :class:`_Spill`).
SPILL_CHUNK = 128
#: The constant key of the rsqrt table's VMEM source (the backend uses the same).
RSQRT_KEY = ("table", "rsqrt")


@dataclass
class StepProgram:
    """One compiled step: the program, where its LOADs' data come from, its output rows."""

    program: Program
    sources: list[tuple[Any, int, int]]
    out: Buf
    key: tuple[int, int, int, int]
    gemms: list[tuple[int, int, int]] = field(default_factory=list)   # (M, K, N) of each

    @property
    def macs(self) -> int:
        """Useful MACs of its GEMMs."""
        return sum(m * k * n for m, k, n in self.gemms)


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


def steady_segment(mc) -> int:
    """The first segment whose memory bank and left-context cache are full."""
    return max(mc.max_memory, -(-mc.left_context // mc.segment_length))


def ring_state(mc, segment: int) -> tuple[int, int, int, int]:
    """``(mem_head, mem_count, lc_head, lc_count)`` at the start of ``segment``."""
    cap = mc.left_context * mc.fold_factor
    pushed = segment * mc.segment_length * mc.fold_factor
    m = mc.max_memory
    return (segment % m, min(segment, m), pushed % cap if cap else 0, min(pushed, cap))


def check_model_size(cfg: Config) -> None:
    """Refuse, before allocating anything, a model whose tensors or step program could not be
    held in memory: too many weight bytes (:func:`model.accounting.check_model_fits`), or a
    step needing more MATMULs than :data:`hw.compiler.MAX_INSTRUCTIONS` (each does at most
    rows x cols x K-chunk MACs)."""
    from hw.compiler import MAX_INSTRUCTIONS
    from model.accounting import check_model_fits, model_step_counts

    try:
        check_model_fits(cfg)
    except ValueError as e:
        raise LayerCompileError(str(e)) from None
    p = as_params(cfg.hardware)
    per_matmul = p.rows * p.cols * max(1, min(p.act_depth, p.wgt_depth) // 2)
    least = model_step_counts(cfg)["macs"] // per_matmul
    if least > MAX_INSTRUCTIONS:
        raise LayerCompileError(
            f"one streaming step needs at least {least:,} MATMUL instructions, more than the "
            f"{MAX_INSTRUCTIONS:,} a program may hold; fix: fewer layers or smaller "
            "d_model/ffn_dim")


class StreamCompiler:
    """Programs for streaming a quantized model's encoder on the accelerator of ``cfg``.

    ``layers``: compile the first ``layers`` layers only (default all)."""

    def __init__(self, cfg: Config, qm: QuantModel | None = None, layers: int | None = None):
        self.cfg = cfg
        self.mc = cfg.model
        check_model_size(cfg)
        self.qm = qm if qm is not None else phantom_model(cfg)
        self.p = as_params(cfg.hardware)
        self.layers = self.mc.n_layers if layers is None else layers
        if not 1 <= self.layers <= self.mc.n_layers:
            raise LayerCompileError(f"layers={layers} must be in 1..{self.mc.n_layers}")
        self._steps: dict[tuple, StepProgram] = {}
        self._plan()

    # ------------------------------------------------------------------ bank plan
    def _regions(self, resident: dict[int, bool], sizes: dict[int, int],
                 measure: bool = False, spill: bool = False,
                 ring_words: dict[str, int] | None = None) -> None:
        """Resident regions of ``sizes`` words at the bottom of each bank, rings above (each
        ``ring_words`` long when given: twice the largest block it held in the plan); VMEM:
        resident tables, the rings (or, with ``spill``, two windows that hold one layer's
        rings each, alternately), the input rows, then the heap of the step's tensors."""
        p, mc = self.p, self.mc
        R = p.rows
        ring_words = ring_words or {}
        self.regions = {b: Region(b, 0, sizes.get(b, 0) if resident[b] else 0, "resident "
                                  "constants", measure) for b in (WGT, ACC, PMEM, VMEM)}
        acc_base = self.regions[ACC].end
        wgt_base = self.regions[WGT].end

        def end(base: int, depth: int, name: str) -> int:
            return min(depth, base + ring_words[name]) if name in ring_words else depth

        self.rings = {
            "act": Ring(ACT, 0, end(0, p.act_depth, "act"), "the A operand tiles of one GEMM"),
            "wgt": Ring(WGT, wgt_base, end(wgt_base, p.wgt_depth, "wgt"), "one B operand tile"),
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

        windows = []
        for layer in range(self.layers):
            if spill and layer >= 2:                  # layer l uses window l % 2
                w = windows[layer % 2]
                rings.memory.append(w[0])
                rings.key.append(w[1])
                rings.value.append(w[2])
                continue
            start = fixed.top
            rings.memory.append(ring(mc.max_memory, res))
            rings.key.append(ring(cap, kv))
            rings.value.append(ring(cap, kv))
            windows.append((rings.memory[-1], rings.key[-1], rings.value[-1], start,
                            fixed.top - start))
        self.spill = spill
        self.windows = windows
        self.layer_state_words = windows[0][4]
        self.state_words = fixed.top - fixed.base
        self.input_words = (mc.segment_length + mc.right_context) * input_layout(mc).words(C)
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
        if resident[VMEM]:                 # the preloaded tables' sources are resident too
            for _, key, make, n in self._tables():
                self.consts.get(None, key, VMEM, make, n)

    def _plan(self) -> None:
        """Decide, per bank, whether its constants are resident: compile the steady-state
        segment (full rings: the largest tensors) with every constant resident in unbounded
        regions and without dependency tracking, measure, keep resident what fits; then
        compile it for real, which places every constant."""
        p = self.p
        depth = {WGT: p.wgt_depth, ACC: p.acc_depth, PMEM: p.pmem_depth, VMEM: p.vmem_depth}
        top = MAX_BANK_WORDS - 1                   # the largest address a field can hold
        big = dict.fromkeys(depth, top // 2)
        probe = dataclasses.replace(p, **dict.fromkeys(("wgt_depth", "acc_depth",
                                                        "pmem_depth", "vmem_depth"), top))
        real = self.p
        self.p = probe
        # the probe holds two layers' state (as when spilled): the plan needs its size only
        self._regions(dict.fromkeys(depth, True), big, measure=True, spill=True)
        steady = steady_segment(self.mc)
        self._compile(steady, track=False)
        used = {b: self.consts.words(b) for b in depth}
        heap = self.heap_high - self.heap_base
        biggest = {name: self.rings[name].biggest for name in ("act", "wgt")}
        self.p = real
        self._steps.clear()
        state = self.layers * self.layer_state_words + self.input_words
        # a step's working set must fit; the state spills to the host when it does not
        spill = heap + state > depth[VMEM]
        if spill:
            state = 2 * self.layer_state_words + self.input_words
        if heap + state > depth[VMEM]:
            how = " (spilled: two layers at a time)" if spill else ""
            raise LayerCompileError(
                f"the VMEM bank is too small: one step needs {heap} words of tensors, "
                f"{state - self.input_words} of streaming state{how} and {self.input_words} "
                f"of input rows, it has {depth[VMEM]}; fix: raise vmem_kib in [hardware]")
        fits = {
            WGT: used[WGT] + 2 * biggest["wgt"] <= depth[WGT],
            ACC: used[ACC] + ACC_SLOTS * p.rows + ACC_CONST_WORDS <= depth[ACC],
            PMEM: used[PMEM] + 2 * self.rings["pmem"].biggest <= depth[PMEM],
            VMEM: used[VMEM] + state + heap <= depth[VMEM],
        }
        self._regions(fits, used, spill=spill,
                      ring_words={"act": 2 * biggest["act"], **(
                          {"wgt": 2 * biggest["wgt"]} if fits[WGT] else {})})
        self._steps[ring_state(self.mc, steady)] = self._compile(steady)   # places constants
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

    def _compile(self, segment: int, track: bool = True) -> StepProgram:
        mc, p = self.mc, self.p
        em = Emitter(p, track)
        heap = Heap(VMEM, self.heap_base, p.vmem_depth, "the step's tensors")
        input_region = Region(VMEM, self.fixed.top, self.heap_base, "the input rows")
        ops = InstrOps(mc, p, em, self.consts, heap, input_region,
                       {"act": self.rings["act"], "wgt": self.rings["wgt"],
                        "acc": self.rings["acc"], "acc_const": self.rings["acc_const"]},
                       self.layers)
        spill = _Spill(self, em, segment) if self.spill else None
        if spill is not None:
            ops.layer_hook, ops.push_hook, ops.tile_hook = spill.begin, spill.pushed, spill.tile
        gold = GoldenEncoder(self.qm, ops)
        chunk = Input(mc.segment_length + mc.right_context, mc.input_dim)
        out, _, _ = gold.infer(chunk, self.state(segment))
        ops.end_step()
        if not out.contiguous:
            raise LayerCompileError("output rows are not contiguous")
        if spill is not None:
            spill.begin(self.layers)
        em.store(VMEM, out.addr, out.rows * out.row_words, "out")
        self.heap_high = max(self.heap_high, heap.high)
        out.alloc = None
        return StepProgram(em.finish(), em.sources, out, ring_state(mc, segment), em.gemms)

    def _tables(self) -> list[tuple[int, Any, Any, int]]:
        """The vector unit's tables as every step starts, ``(table, constant key, maker of
        the words, words)``: the rsqrt table (RLUT) and layer 0's exp table (ELUT)."""
        C = self.p.cols
        key = exp_table(0)
        return [(1, RSQRT_KEY, _rsqrt_words(C), _rsqrt_count(C)),
                (0, ("table", key), *table_data(self.qm.tensors[key[1]], C))]

    def preload(self) -> StepProgram:
        """The program run once before the first segment: the resident constants, then the
        tables every step starts with into the vector unit (:meth:`_tables`; their sources
        are resident tables, or the arena)."""
        em = Emitter(self.p)
        for key, (bank, addr, n) in self.consts.placed.items():
            em.load(bank, addr, n, ("const", key))
        for table, key, make, n in self._tables():
            if self.resident[VMEM]:
                src = self.consts.placed[key][1]
            else:
                src = self.heap_base
                self.consts.register(key, VMEM, make, n)
                em.load(VMEM, src, n, ("const", key))
            em.emit(isa.Instr("VLUT", {"table": table, "src": src}))
        return StepProgram(em.finish(), em.sources, None, (-1, -1, -1, -1))

    def readback(self) -> StepProgram:
        """STOREs of every ring (memory, then key and value, per layer). With spilled state
        the rings are on the host already: no STOREs (use :meth:`spilled_rings`)."""
        em = Emitter(self.p)
        if self.spill:
            return StepProgram(em.finish(), em.sources, None, (-1, -1, -1, -1))
        r = self.ring_bufs
        for i in range(self.layers):
            for tag, buf in (("memory", r.memory[i]), ("key", r.key[i]), ("value", r.value[i])):
                if buf.rows:
                    em.store(VMEM, buf.addr, buf.rows * buf.row_words, f"L{i}.{tag}")
        return StepProgram(em.finish(), em.sources, None, (-1, -1, -1, -1))

    # ------------------------------------------------------------------ host data
    def din(self, step: StepProgram, chunk: np.ndarray | None = None,
            spilled: dict[int, np.ndarray] | None = None) -> np.ndarray:
        """The data-in stream of ``step``: the segment's rows (``chunk``, ``(L+R, input_dim)``:
        int16 rows, or int8 features), the constants and the spilled state (``spilled``: layer
        -> the words the previous segment stored, zeros if not given), in the order of its
        LOADs."""
        p, C = self.p, self.p.cols
        res = input_layout(self.mc)
        pieces = []
        for source, bank, count in step.sources:
            if source[0] == "input":
                if chunk is None:
                    raise LayerCompileError("the step loads input rows: pass the chunk")
                _, lo, hi = source
                words = host.vmem_bytes(host.rows_to_lanes(np.asarray(chunk)[lo:hi], res, C))
            elif source[0] == "spill":                # ("spill", layer, lo, hi)
                words = (spilled or {}).get(source[1])
                words = (np.zeros((count, p.word_bytes(bank)), np.uint8) if words is None
                         else words[source[2]:source[3]])
            else:
                words = self.consts.data_of(source[1])
                if len(source) > 2:                  # ("const", key, lo, hi): a part of it
                    words = words[source[2]:source[3]]
            if len(words) != count or words.shape[1] != p.word_bytes(bank):
                raise LayerCompileError(f"data of {source} is {words.shape}, the LOAD takes "
                                        f"{count} words of {p.word_bytes(bank)} bytes")
            pieces.append(words_to_beats(words, p.host_bytes))
        if not pieces:
            return np.zeros((0, p.host_bytes), np.uint8)
        return np.concatenate(pieces)

    def spill_feed(self, step: StepProgram, previous: StepProgram) -> list[tuple[int, int, int]]:
        """Where the spilled state goes in ``step``'s data-in stream: ``(beat, lo, hi)`` =
        beats ``lo..hi`` of ``previous``'s data-out stream (its spill STOREs) at ``beat``.
        The host copies them over; it computes nothing."""
        p, out, pos = self.p, [], 0
        stored = _stored_beats(previous.program)
        beats = p.beats(VMEM)
        for source, bank, count in step.sources:
            if source[0] == "spill":                # words lo..hi of a layer's window
                _, layer, lo, hi = source
                for first, n, beat in stored[layer]:
                    a, b = max(lo, first), min(hi, first + n)
                    if a < b:
                        out.append((pos + (a - lo) * beats, beat + (a - first) * beats,
                                    beat + (b - first) * beats))
            pos += count * p.beats(bank)
        return out

    def output_rows(self, step: StepProgram, dout: np.ndarray) -> np.ndarray:
        """A step's output rows of its data-out stream: the last layer's int16 rows ``(L, D)``,
        or the int8 logits ``(L, vocab)``."""
        words = step.program.unpack(dout)["out"]
        lanes = np.ascontiguousarray(words).view("<i2").astype(np.int64)
        return host.lanes_to_rows(lanes, step.out.layout, self.p.cols)

    def rings_of(self, program: StepProgram, dout: np.ndarray) -> dict[str, np.ndarray]:
        """``L{i}.memory/key/value`` -> the ring's rows (int8 values, golden layout), from
        the readback program's output, or, with spilled state, from the last step's."""
        got = program.program.unpack(dout)
        r = self.ring_bufs
        out = {}
        for i in range(self.layers):
            if self.spill:
                *_, base, n = self.windows[i % 2]
                words = got.get(f"spill.L{i}")
            for tag, buf in (("memory", r.memory[i]), ("key", r.key[i]), ("value", r.value[i])):
                name = f"L{i}.{tag}"
                if self.spill:
                    if words is None or not buf.rows:
                        continue
                    part = words[buf.addr - base:buf.addr - base + buf.rows * buf.row_words]
                elif name in got:
                    part = got[name]
                else:
                    continue
                lanes = np.ascontiguousarray(part).view("<i2").astype(np.int64)
                out[name] = host.lanes_to_rows(lanes, buf.layout, self.p.cols)
        return out

    def spill_words(self, step: StepProgram, dout: np.ndarray) -> dict[int, np.ndarray]:
        """The state a step spilled, per layer (the next step's ``din(spilled=...)``)."""
        got = step.program.unpack(dout)
        return {i: got[f"spill.L{i}"] for i in range(self.layers) if f"spill.L{i}" in got}


class _Spill:
    """The spilled state's transfers in one step program. A layer's window is STOREd once its
    rings are pushed, and the next layer's state LOADed (into the other window, STOREd by
    then) while this layer runs: a :data:`SPILL_CHUNK`-word part between two output tiles of
    a weight GEMM (:attr:`InstrOps.tile_hook`; a LOAD only while the host input link idles),
    the rest before the next layer begins. Layer 0's state is LOADed as the step begins; at
    segment 0 the rings are empty: nothing to LOAD."""

    def __init__(self, sc: StreamCompiler, em: Emitter, segment: int):
        self.sc, self.em, self.segment = sc, em, segment
        self.layer = -1
        self.pushed_rings: list[Buf] = []
        self.pending: dict[bool, tuple[int, int]] = {}     # LOAD or STORE -> (layer, word)

    def begin(self, layer: int) -> None:
        """Before layer ``layer`` (``layers``: after the last one)."""
        for load in list(self.pending):
            self._transfer(load, self.sc.layer_state_words)
        self.layer, self.pushed_rings = layer, []
        if self.segment == 0 or layer >= self.sc.layers:
            return
        if layer == 0:
            self.pending[True] = (0, 0)
            self._transfer(True, self.sc.layer_state_words)
        if layer + 1 < self.sc.layers:
            self.pending[True] = (layer + 1, 0)

    def pushed(self, ring: Buf) -> None:
        r = self.sc.ring_bufs
        self.pushed_rings.append(ring)
        if all(any(q is x for q in self.pushed_rings)
               for x in (r.memory[self.layer], r.key[self.layer], r.value[self.layer])):
            self.pending[False] = (self.layer, 0)

    def tile(self, link_idle: bool) -> None:
        for load in (False, True):
            if load in self.pending and (link_idle or not load):
                self._transfer(load, SPILL_CHUNK)

    def _transfer(self, load: bool, words: int) -> None:
        """LOAD (or STORE) the next ``words`` words of the pending transfer of that kind."""
        layer, lo = self.pending.pop(load)
        *_, base, n = self.sc.windows[layer % 2]
        hi = min(n, lo + words)
        if load:
            self.em.load(VMEM, base + lo, hi - lo, ("spill", layer, lo, hi))
        else:
            self.em.store(VMEM, base + lo, hi - lo, f"spill.L{layer}")
        if hi < n:
            self.pending[load] = (layer, hi)


def _stored_beats(program: Program) -> dict[int, list[tuple[int, int, int]]]:
    """Layer -> ``(first word, words, first beat)`` of each of its spill STOREs."""
    out: dict[int, list[tuple[int, int, int]]] = {}
    pos = 0
    for o in program.outputs:
        if o.tag.startswith("spill.L"):
            parts = out.setdefault(int(o.tag.removeprefix("spill.L")), [])
            parts.append((sum(n for _, n, _ in parts), o.count, pos))
        pos += o.count * program.params.beats(o.bank)
    return out


def _rsqrt_count(cols: int) -> int:
    return host.table_word_count(len(intops.RSQRT_LUT), cols)


def _rsqrt_words(cols: int):
    return lambda: host.vmem_bytes(host.table_words(intops.RSQRT_LUT, cols))


__all__ = ["StepProgram", "StreamCompiler", "phantom_model", "ring_state", "steady_segment"]
