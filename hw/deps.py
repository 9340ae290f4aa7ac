"""Data hazards between instructions: which SRAM words each one touches and who must wait.

Used twice: the compiler asks :class:`DepTracker` for the dependency fields an instruction
needs (``add``), and the ISA simulator re-checks a finished program (``check``) so a missing
dependency is an error instead of a silent race on the RTL.

Ordering facts the hardware guarantees without dependency fields (docs/ISA.md):

* each unit starts its instructions in program order and completes them in that order;
* an instruction starts only after its queue predecessor started, so whatever the
  predecessor waited for has completed (the "after" vector below is inherited);
* FENCE/DONE wait for everything before them;
* within one unit: LOAD->LOAD, STORE->*, REQUANT write-after-read/-write and MATMUL
  write-after-write/-read, and MATMUL read-after-write of the *same* accumulator tile
  (ACCUMULATE chains) are ordered by the pipelines; the vector unit and the mover finish an
  instruction before they start the next. Every other same-unit hazard (e.g. a REQUANT
  reading rows another REQUANT wrote) needs an explicit dependency;
* a shared bank port (``hw.uarch.SHARED_PORTS``) is driven by one unit at a time: two
  instructions of different units that use the same one are ordered like a write-after-write
  on a one-word pseudo bank.
"""

from __future__ import annotations

import numpy as np

from hw.isa import DEP_MAX, Instr, IsaError
from hw.opcodes import Region
from hw.opspec import region_words
from hw.uarch import BANK_NAMES, BANKS, SHARED_PORTS, UNITS, AccelParams

#: Shared bank ports are tracked as one-word pseudo banks after the real ones: every user
#: "writes" it, so instructions of different units that share a port are ordered.
PORT_BANK = {name: len(BANKS) + k for k, name in enumerate(SHARED_PORTS)}
_PLACE_NAMES = (*BANK_NAMES, *(f"port {name}" for name in SHARED_PORTS))


def regions(ins: Instr, p: AccelParams) -> tuple[list[Region], list[Region]]:
    """(reads, writes) of ``ins`` as SRAM word ranges (the opcode table's ``regions`` rule)."""
    spec = ins.spec
    return (spec.regions or spec.need("regions"))(ins.args, p)


def hazard_regions(ins: Instr, p: AccelParams) -> tuple[list[Region], list[Region]]:
    """:func:`regions` plus a pseudo-bank write for each shared port ``ins`` uses."""
    reads, writes = regions(ins, p)
    spec = ins.spec
    ports = (spec.ports or spec.need("ports"))(ins.args, p)
    if not ports:
        return reads, writes
    return reads, writes + [(PORT_BANK[name], 0, 1) for name in ports]


def _describe(where: tuple | None) -> str:
    """What an instruction touches where it must wait (for error messages)."""
    if where is None:
        return ""
    bank, lo, hi, raw = where
    if bank >= len(BANKS):
        return f"uses {_PLACE_NAMES[bank]}"
    return f"{'reads' if raw else 'writes'} {BANK_NAMES[bank]}[{lo}:{hi}]"


class DepTracker:
    """Program-order analysis of SRAM hazards (one instance per program)."""

    def __init__(self, p: AccelParams):
        self.p = p
        nu = len(UNITS)
        # last writer ([:, 0]) and reader ([:, 1]) per word and unit (per-unit instruction
        # index, -1 = none), shape (depth, 2, units) so one slice max covers all units
        self.last = [np.full((p.depth(b), 2, nu), -1, np.int64) for b in BANKS]
        # shared ports (pseudo banks, only ever "written"): last user per unit
        self.port_last = {PORT_BANK[name]: [-1] * nu for name in SHARED_PORTS}
        self.count = [0] * nu                 # instructions per unit so far
        self.after: list[list[list[int]]] = [[] for _ in range(nu)]  # per unit, per instr
        self.instrs: list[list[Instr]] = [[] for _ in range(nu)]
        self.fence = [-1] * nu                # complete before anything after a fence
        self.pc = 0

    # ------------------------------------------------------------------ public
    def add(self, ins: Instr) -> Instr:
        """``ins`` with the dependency fields its hazards need (existing fields are kept
        when they already cover a hazard); records it."""
        if ins.unit is None:
            return self._record_control(ins)
        u = ins.unit
        touched = hazard_regions(ins, self.p)
        need, _ = self._needs(ins, touched)
        deps = list(ins.deps)
        after = self._after_vector(u, deps)
        for v in range(len(UNITS)):
            if need[v] < 0 or after[v] >= need[v]:
                continue
            deps[v] = min(self.count[v] - need[v], DEP_MAX)
            after = self._after_vector(u, deps)
        out = ins.with_deps(tuple(deps)) if tuple(deps) != ins.deps else ins
        self._record(out, after, touched)
        return out

    def check(self, ins: Instr, pc: int) -> None:
        """Raise :class:`IsaError` if ``ins`` races with an earlier instruction."""
        if ins.unit is None:
            self._record_control(ins)
            return
        u = ins.unit
        after = self._after_vector(u, list(ins.deps))
        touched = hazard_regions(ins, self.p)
        need, why = self._needs(ins, touched)
        for v in range(len(UNITS)):
            if need[v] >= 0 and after[v] < need[v]:
                other = self.instrs[v][need[v]]
                raise IsaError(
                    f"instruction #{pc} {ins} {_describe(why[v])} and races with "
                    f"{UNITS[v]} instruction "
                    f"{other}; fix: give it a {UNITS[v]} dependency of distance "
                    f"<= {self.count[v] - need[v]}")
        self._record(ins, after, touched)

    def footprint(self) -> dict[int, np.ndarray]:
        """Per bank, a mask of the words the recorded instructions read or write."""
        return {b: (self.last[b] >= 0).any(axis=(1, 2)) for b in BANKS}

    # ------------------------------------------------------------------ internals
    def _record_control(self, ins: Instr) -> Instr:
        if ins.spec.need("control") == "barrier":
            self.fence = [c - 1 for c in self.count]
        self.pc += 1
        return ins

    def _after_vector(self, u: int, deps: list[int]) -> list[int]:
        """Per unit: highest instruction index surely complete when this one starts."""
        fence = self.fence
        if self.count[u]:
            vec = [x if x > y else y for x, y in zip(fence, self.after[u][-1], strict=True)]
        else:
            vec = list(fence)
        for v, d in enumerate(deps):
            if not d:
                continue
            idx = self.count[v] - d
            if idx >= 0:
                vec = [x if x > y else y for x, y in zip(vec, self.after[v][idx], strict=True)]
                if idx > vec[v]:
                    vec[v] = idx
        return vec

    def _same_unit_ok(self, ins: Instr, other: Instr) -> bool:
        """Same-unit read-after-write the pipeline orders by itself (the opcode table's
        ``ordered_raw`` rule; module docstring)."""
        return bool(ins.spec.need("ordered_raw")(ins, other))

    def _needs(self, ins: Instr, touched: tuple[list[Region], list[Region]]
               ) -> tuple[list[int], list[tuple | None]]:
        """Per unit: highest earlier instruction index this one must wait for (-1 = none),
        and what it touches there (``touched``: its :func:`hazard_regions`)."""
        u = ins.unit
        reads, writes = touched
        need = [-1] * len(UNITS)
        why: list[tuple | None] = [None] * len(UNITS)
        n_banks = len(BANKS)
        reduce = np.maximum.reduce
        # a read waits for writers, a write for writers and readers
        for regs, raw in ((reads, True), (writes, False)):
            for region in regs:
                bank, lo, hi = region[0], region[1], region[2]
                if hi <= lo:
                    continue
                if bank >= n_banks:
                    tops = self.port_last[bank]
                else:
                    block = self.last[bank][region_words(region)]
                    tops = (reduce(block[:, 0], axis=0) if raw else
                            reduce(block, axis=(0, 1))).tolist()
                for v, top in enumerate(tops):
                    if top <= need[v]:
                        continue
                    # same unit: only read-after-write can be unordered by the pipeline; if the
                    # latest writer is ordered, the unit's earlier writers are too
                    if v == u and (not raw or self._same_unit_ok(ins, self.instrs[u][top])):
                        continue
                    need[v] = top
                    why[v] = (bank, lo, hi, raw)
        return need, why

    def _record(self, ins: Instr, after: list[int],
                touched: tuple[list[Region], list[Region]]) -> None:
        u = ins.unit
        idx = self.count[u]
        self.after[u].append(after)
        self.instrs[u].append(ins)
        reads, writes = touched
        n_banks = len(BANKS)
        for which, regs in ((1, reads), (0, writes)):
            for region in regs:
                bank = region[0]
                if bank >= n_banks:
                    self.port_last[bank][u] = idx
                    continue
                self.last[bank][region_words(region), which, u] = idx
        self.count[u] += 1
        self.pc += 1


__all__ = ["DepTracker", "PORT_BANK", "hazard_regions", "regions"]
