"""Assembling a program: instructions with their dependency fields, the host data they load
and a map of the data they store.

:class:`ProgramBuilder` gives every instruction the dependency fields its hazards need
(``hw.deps.DepTracker``), appends each LOAD's words to the data-in stream in program order,
and names each STORE's words, so :meth:`Program.unpack` can split the data-out stream. The
GEMM compiler predates it and keeps its own bookkeeping; test programs and the layer
compiler use this one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hw import isa
from hw.deps import DepTracker
from hw.hostio import beats_to_words, words_to_beats
from hw.isa import Instr
from hw.opcodes import STORE_BANKS
from hw.timing import watchdog_budget
from hw.uarch import ACC, PMEM, VMEM, AccelParams, as_params
from hw.vector import formats
from model.config import HardwareConfig


@dataclass(frozen=True)
class Output:
    """One STORE: ``count`` words of ``bank`` from ``addr``, tagged ``tag``."""

    tag: str
    bank: int
    addr: int
    count: int


@dataclass
class Program:
    """A finished program: instructions (CONFIG ... DONE), its data-in beats, its STOREs."""

    params: AccelParams
    instrs: list[Instr]
    din: np.ndarray
    outputs: list[Output] = field(default_factory=list)
    #: per bank, a mask of the words the instructions touch (the dependency tracker's)
    footprint: dict[int, np.ndarray] | None = None

    def words(self) -> list[int]:
        return isa.encode_program(self.instrs)

    @property
    def n_out_beats(self) -> int:
        return sum(o.count * self.params.beats(o.bank) for o in self.outputs)

    def out_beats(self, tag: str) -> tuple[int, int]:
        """The beats ``[lo, hi)`` of the data-out stream that the (single) STORE ``tag``
        produces."""
        pos = 0
        for o in self.outputs:
            n = o.count * self.params.beats(o.bank)
            if o.tag == tag:
                return pos, pos + n
            pos += n
        raise KeyError(tag)

    def unpack(self, dout: np.ndarray) -> dict[str, np.ndarray]:
        """The data-out stream -> ``tag -> (count, word_bytes)`` uint8 words (a tag stored
        several times gets its words concatenated in program order)."""
        p = self.params
        dout = np.asarray(dout, np.uint8).reshape(-1, p.host_bytes)
        if len(dout) != self.n_out_beats:
            raise ValueError(f"output stream has {len(dout)} beats, the program stores "
                             f"{self.n_out_beats}")
        out: dict[str, list[np.ndarray]] = {}
        pos = 0
        for o in self.outputs:
            n = o.count * p.beats(o.bank)
            out.setdefault(o.tag, []).append(beats_to_words(dout[pos:pos + n],
                                                            p.word_bytes(o.bank)))
            pos += n
        return {tag: np.concatenate(parts) for tag, parts in out.items()}


class ProgramBuilder:
    """Emit instructions in program order; :meth:`finish` returns the :class:`Program`.

    ``track=False`` (a plan-only compile that measures allocations) skips the legality
    checks and the dependency fields: its program must not be run or timed."""

    def __init__(self, hw: HardwareConfig | AccelParams, track: bool = True):
        self.p = p = as_params(hw)
        self.deps = DepTracker(p) if track else None
        self._legal: set[tuple] = set()
        config = isa.config(0, p.rows, p.cols)
        self.instrs: list[Instr] = [self.deps.add(config) if track else config]
        self._din: list[np.ndarray] = []
        self.outputs: list[Output] = []

    def emit(self, ins: Instr) -> Instr:
        """Append ``ins`` (checked legal, :class:`hw.isa.IsaError` otherwise) with the
        dependency fields its hazards need."""
        if self.deps is None:
            self.instrs.append(ins)
            return ins
        key = (ins.op, tuple(ins.args.values()))
        if key not in self._legal:                # legality depends on the fields only
            isa.check(ins, self.p, len(self.instrs))
            self._legal.add(key)
        out = self.deps.add(ins)
        self.instrs.append(out)
        return out

    # ------------------------------------------------------------------ host data in
    def load(self, bank: int, addr: int, words: np.ndarray) -> Instr:
        """LOAD ``words`` (``(n, word_bytes)`` uint8) into ``bank`` from word ``addr``."""
        words = np.ascontiguousarray(words, np.uint8)
        if words.ndim != 2 or words.shape[1] != self.p.word_bytes(bank):
            raise ValueError(f"words of bank {bank} must be (n, {self.p.word_bytes(bank)}) "
                             f"bytes, got {words.shape}")
        self._din.append(words_to_beats(words, self.p.host_bytes))
        return self.emit(isa.load(bank, addr, len(words)))

    def load_vmem_rows(self, addr: int, values: np.ndarray) -> Instr:
        """LOAD a ``(rows, W)`` integer tensor into VMEM rows (``formats.vmem_rows``)."""
        lanes = formats.vmem_rows(values, self.p.cols)
        return self.load(VMEM, addr, lanes.astype("<i2").view(np.uint8))

    def load_vmem_lanes(self, addr: int, lanes: np.ndarray) -> Instr:
        """LOAD ``(n, cols)`` 16-bit lanes (raw, e.g. a LUT) into VMEM words."""
        raw = np.asarray(lanes, np.int64) & 0xFFFF
        return self.load(VMEM, addr, raw.astype("<u2").view(np.uint8).reshape(len(raw), -1))

    def load_pmem(self, addr: int, lanes: np.ndarray) -> Instr:
        """LOAD ``(n, cols)`` uint64 lanes into PMEM words."""
        raw = np.ascontiguousarray(np.asarray(lanes, np.uint64).astype("<u8"))
        return self.load(PMEM, addr, raw.view(np.uint8).reshape(len(raw), -1))

    def load_acc(self, addr: int, lanes: np.ndarray) -> Instr:
        """LOAD ``(n, cols)`` int32 lanes into ACC words."""
        raw = np.ascontiguousarray(np.asarray(lanes, np.int64).astype("<i4"))
        return self.load(ACC, addr, raw.view(np.uint8).reshape(len(raw), -1))

    # ------------------------------------------------------------------ host data out
    def store(self, bank: int, addr: int, count: int, tag: str) -> Instr:
        """STORE ``count`` words of ``bank`` (ACC or VMEM) from ``addr`` as ``tag``."""
        field_of = {b: f for f, b in STORE_BANKS.items()}
        if bank not in field_of:
            raise ValueError(f"STORE reads ACC or VMEM, not bank {bank}")
        self.outputs.append(Output(tag, bank, addr, count))
        return self.emit(isa.Instr("STORE", {"addr": addr, "count": count,
                                             "bank": field_of[bank]}))

    def finish(self) -> Program:
        """Append DONE, set CONFIG's watchdog budget; the program."""
        self.emit(isa.done())
        instrs = list(self.instrs)
        if self.deps is not None:
            instrs[0] = isa.config(watchdog_budget(instrs, self.p), self.p.rows, self.p.cols)
        din = np.concatenate(self._din) if self._din else np.zeros((0, self.p.host_bytes),
                                                                   np.uint8)
        footprint = self.deps.footprint() if self.deps is not None else None
        return Program(self.p, instrs, din, list(self.outputs), footprint)


def vmem_values(words: np.ndarray, width: int, cols: int) -> np.ndarray:
    """Stored VMEM words (``(n, 2*cols)`` uint8) -> ``(rows, width)`` int64 (int16 lanes)."""
    lanes = np.ascontiguousarray(words, np.uint8).view("<i2")
    return formats.rows_from_vmem(lanes, width, cols)


__all__ = ["Output", "Program", "ProgramBuilder", "vmem_values"]
