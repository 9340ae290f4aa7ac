"""Cycle-exact timing model of the accelerator (docs/ISA.md, "Timing").

The executable specification of the micro-architecture: :func:`schedule` replays a program
through the rules the RTL implements -- in-order fetch and dispatch into per-unit queues of
depth ``QUEUE_DEPTH``, in-order units, dependency waits on completions -- and takes each
instruction's occupancy, latency and counters from its timing rule in the opcode table
(``hw/opcodes.py``: ``cost``, ``spacing``, ``stall_counter``). Its counters equal the RTL's
performance counters for every program whose host streams run at full rate (the simulation
harness), which the RTL tests assert. An opcode without a timing rule raises
:class:`hw.opcodes.OpcodeError`. Pure Python: no numpy, amaranth or RTL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hw import isa
from hw.uarch import COUNTERS, QUEUE_DEPTH, UNITS, AccelParams, as_params
from model.config import HardwareConfig


@dataclass
class InstrTiming:
    """When one instruction went through the machine (cycle numbers from the first running
    cycle)."""

    pc: int
    op: str
    dispatch: int
    start: int = -1      # popped from its queue by the unit (-1: dispatcher-only op)
    done: int = -1       # completion cycle (its effects are visible from done + 1)


#: Per unit, how many recent starts/completions the model keeps: a dependency field reaches
#: ``isa.DEP_MAX`` instructions back, a full queue ``QUEUE_DEPTH``.
HISTORY = isa.DEP_MAX + 1
assert QUEUE_DEPTH <= HISTORY


class Scheduler:
    """The timing rules, one instruction at a time (:func:`schedule` is its loop; the fast
    GEMM estimator, ``sim/perf/fastgemm.py``, drives it block by block). The state is what
    the rules read: per unit the recent starts (``pops``) and completions (``dones``), the
    previous instruction, when the unit is free; the last completion; the fetch cycle; the
    counters; host transfers not yet merged into ``union`` (the ``dma_busy`` count)."""

    def __init__(self, p: AccelParams):
        n_units = len(UNITS)
        self.p = p
        self.n = [0] * n_units                                # instructions per unit so far
        self.pops: list[list[int]] = [[] for _ in range(n_units)]
        self.dones: list[list[int]] = [[] for _ in range(n_units)]
        self.prev: list[isa.Instr | None] = [None] * n_units
        self.unit_free = [0] * n_units
        self.last_done = -1
        self.fetch = 0            # cycle the instruction's beat is accepted into IR
        self.end: int | None = None
        self.cnt = dict.fromkeys(COUNTERS, 0)
        self.pending: list[tuple[int, int]] = []
        self.union = 0
        self._cost: dict = {}

    def step(self, ins: isa.Instr) -> tuple[int, int, int]:
        """Time ``ins`` -> ``(dispatch, start, done)`` (start, done -1: dispatcher-only)."""
        spec = ins.spec
        t = self.fetch + 1        # IR valid from the cycle after the fetch
        u = ins.unit
        if u is not None:
            key = (ins.op, tuple(ins.args.values()))
            cost = self._cost.get(key)
            if cost is None:
                cost = self._cost[key] = spec.need("cost")(ins.args, self.p)
            if self.n[u] >= QUEUE_DEPTH:   # queue full until that entry leaves
                t = max(t, self.pops[u][-QUEUE_DEPTH] + 1)
        elif spec.need("control") == "barrier":
            t = max(t, self.last_done + 1)
        elif spec.control != "immediate":
            raise isa.OpcodeError(f"opcode {ins.op}: unknown control kind {spec.control!r}")
        self.fetch = t            # the next beat enters IR in the dispatch cycle
        if spec.ends:
            self.end = t
            return t, -1, -1
        if u is None:
            return t, -1, -1
        pops = self.pops[u]
        visible = t + 1
        if self.n[u]:
            visible = max(visible, pops[-1] + 1)
        structural = self.unit_free[u]
        prev = self.prev[u]
        if spec.spacing is not None and prev is not None and prev.op == ins.op:
            structural = max(structural, pops[-1] + spec.spacing(prev.args, ins.args, self.p))
        dep_ready = 0
        for v, d in enumerate(ins.deps):
            if d and self.n[v] - d >= 0:
                dep_ready = max(dep_ready, self.dones[v][-d] + 1)
        ready = max(visible, structural)
        start = max(ready, dep_ready)
        if spec.stall_counter is not None and dep_ready > ready:
            self.cnt[spec.stall_counter] += dep_ready - ready
        done = start + cost.done
        self.unit_free[u] = start + cost.free
        for name, value in cost.busy.items():
            self.cnt[name] += value
        if cost.host_beats:
            self.pending.append((start + 1, start + cost.host_beats))
        pops.append(start)
        dones = self.dones[u]
        dones.append(done)
        if len(pops) > 2 * HISTORY:
            del pops[:HISTORY]
            del dones[:HISTORY]
        self.prev[u] = ins
        self.last_done = max(self.last_done, done)
        self.n[u] += 1
        return t, start, done

    def settle(self, limit: int | None = None) -> None:
        """Add the host transfer cycles up to ``limit`` to ``union`` (default: the cycles no
        later transfer can touch -- any later one moves beats from ``fetch + 3`` on)."""
        if not self.pending:
            return
        limit = self.fetch + 1 if limit is None else limit
        keep, segs = [], []
        for lo, hi in sorted(self.pending):
            if segs and lo <= segs[-1][1] + 1:
                segs[-1][1] = max(segs[-1][1], hi)
            else:
                segs.append([lo, hi])
        for lo, hi in segs:
            if hi <= limit:
                self.union += hi - lo + 1
            elif lo <= limit:       # [lo, limit] is final, the rest may still merge
                self.union += limit - lo + 1
                keep.append((limit + 1, hi))
            else:
                keep.append((lo, hi))
        self.pending = keep

    def counters(self) -> dict[str, int]:
        """The performance counters of the program ended by DONE."""
        if self.end is None:
            raise isa.IsaError("program ends without DONE; the timing model needs a complete "
                               "program")
        self.settle(limit=max([hi for _, hi in self.pending], default=0))
        return {**self.cnt, "total": self.end + 1, "dma_busy": self.union}


def schedule(program: Any, hw: HardwareConfig | AccelParams) -> tuple[list[InstrTiming], dict]:
    """Per-instruction timing and the performance counters (see :func:`program_cycles`)."""
    sched = Scheduler(as_params(hw))
    out: list[InstrTiming] = []
    for pc, ins in enumerate(isa.instructions(program)):
        dispatch, start, done = sched.step(ins)
        out.append(InstrTiming(pc, ins.op, dispatch, start, done))
        if sched.end is not None:
            break
        if len(sched.pending) > 4 * HISTORY:
            sched.settle()
    return out, sched.counters()


def program_cycles(program: Any, hw: HardwareConfig | AccelParams) -> dict[str, int]:
    """Cycle counters of ``program`` (instructions, words or a compiled program) on ``hw``.

    Keys (the RTL counter names, ``hw.uarch.COUNTERS``): ``total`` (start to DONE, host
    transfers included), ``array_busy`` (cycles a k-step enters the array),
    ``dma_in_busy``/``dma_out_busy`` (host beats in/out), ``dma_busy`` (cycles with a beat in
    either direction), ``requant_busy`` (REQUANT reading cycles) and ``stall`` (cycles the
    array's next tile was ready to start but waited for a dependency).
    """
    return schedule(program, hw)[1]


def watchdog_budget(instrs: Sequence[isa.Instr], p: AccelParams) -> int:
    """CONFIG's cycle budget: the program run fully serially (every instruction waits for all
    before it: its ``serial`` cycles from the opcode table), plus two cycles each for fetch
    and dispatch and a 64-cycle margin. The overlapped schedule is never slower, so a run
    that exceeds it is hung."""
    total = 64
    for ins in instrs:
        total += 2
        if ins.unit is not None:
            total += ins.spec.need("cost")(ins.args, p).serial
    return min(total, 2**32 - 1)


def union_length(intervals: Sequence[tuple[int, int]]) -> int:
    """Integers covered by inclusive ``(first, last)`` intervals (half-open ``[s, e)``
    ranges: pass ``(s, e - 1)``)."""
    total, cur_lo, cur_hi = 0, None, None
    for lo, hi in sorted(intervals):
        if hi < lo:
            continue
        if cur_hi is None or lo > cur_hi + 1:
            if cur_hi is not None:
                total += cur_hi - cur_lo + 1
            cur_lo, cur_hi = lo, hi
        else:
            cur_hi = max(cur_hi, hi)
    if cur_hi is not None:
        total += cur_hi - cur_lo + 1
    return total


__all__ = ["InstrTiming", "program_cycles", "schedule", "union_length", "watchdog_budget"]
