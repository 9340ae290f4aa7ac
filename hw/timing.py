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


def schedule(program: Any, hw: HardwareConfig | AccelParams) -> tuple[list[InstrTiming], dict]:
    """Per-instruction timing and the performance counters (see :func:`program_cycles`)."""
    p = as_params(hw)
    instrs = isa.instructions(program)
    n_units = len(UNITS)
    pops: list[list[int]] = [[] for _ in range(n_units)]
    dones: list[list[int]] = [[] for _ in range(n_units)]
    prev: list[isa.Instr | None] = [None] * n_units
    unit_free = [0] * n_units         # earliest start allowed by the unit's previous instr
    last_done = -1                    # latest completion so far (for barriers)
    out: list[InstrTiming] = []
    cnt = dict.fromkeys(COUNTERS, 0)
    host_intervals: list[tuple[int, int]] = []
    fetch = 0                         # cycle the instruction's beat is accepted into IR
    end = None
    for pc, ins in enumerate(instrs):
        spec = ins.spec
        t = fetch + 1                 # IR valid from the cycle after the fetch
        u = ins.unit
        if u is not None:
            cost = spec.need("cost")(ins.args, p)
            j = len(pops[u])
            if j >= QUEUE_DEPTH:      # queue full until entry j-QUEUE_DEPTH leaves
                t = max(t, pops[u][j - QUEUE_DEPTH] + 1)
        elif spec.need("control") == "barrier":
            t = max(t, last_done + 1)
        elif spec.control != "immediate":
            raise isa.OpcodeError(f"opcode {ins.op}: unknown control kind {spec.control!r}")
        rec = InstrTiming(pc, ins.op, t)
        out.append(rec)
        fetch = t                     # the next beat enters IR in the dispatch cycle
        if spec.ends:
            end = t
            break
        if u is None:
            continue
        visible = t + 1
        if pops[u]:
            visible = max(visible, pops[u][-1] + 1)
        structural = unit_free[u]
        if spec.spacing is not None and prev[u] is not None and prev[u].op == ins.op:
            structural = max(structural, pops[u][-1] + spec.spacing(prev[u].args, ins.args, p))
        dep_ready = 0
        for v, d in enumerate(ins.deps):
            idx = len(pops[v]) - d
            if d and idx >= 0:
                dep_ready = max(dep_ready, dones[v][idx] + 1)
        ready = max(visible, structural)
        start = max(ready, dep_ready)
        if spec.stall_counter is not None and dep_ready > ready:
            cnt[spec.stall_counter] += dep_ready - ready
        done = start + cost.done
        unit_free[u] = start + cost.free
        for name, value in cost.busy.items():
            cnt[name] += value
        if cost.host_beats:
            host_intervals.append((start + 1, start + cost.host_beats))
        pops[u].append(start)
        dones[u].append(done)
        prev[u] = ins
        last_done = max(last_done, done)
        rec.start, rec.done = start, done
    if end is None:
        raise isa.IsaError("program ends without DONE; the timing model needs a complete "
                           "program")
    cnt["total"] = end + 1
    cnt["dma_busy"] = union_length(host_intervals)
    return out, cnt


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
