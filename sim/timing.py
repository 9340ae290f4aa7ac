"""Cycle-exact timing model of the accelerator (docs/ISA.md, "Timing").

:func:`program_cycles` replays a program through the rules the RTL implements: in-order fetch
and dispatch into per-unit queues of depth ``QUEUE_DEPTH``, in-order units, dependency waits
on completions, each unit's occupancy and latency. Its counters equal the RTL's performance
counters for every program whose host streams run at full rate (the simulation harness),
which the RTL tests assert. Pure Python: no numpy, amaranth or RTL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hw import isa
from hw.isa import Instr
from hw.uarch import ACC, QUEUE_DEPTH, AccelParams
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


def _params(hw: HardwareConfig | AccelParams) -> AccelParams:
    return hw if isinstance(hw, AccelParams) else AccelParams.from_hw(hw)


def _instrs(program: Any) -> list[Instr]:
    if hasattr(program, "instrs"):
        program = program.instrs
    return [x if isinstance(x, Instr) else isa.decode(int(x)) for x in program]


def schedule(program: Any, hw: HardwareConfig | AccelParams) -> tuple[list[InstrTiming], dict]:
    """Per-instruction timing and the performance counters (see :func:`program_cycles`)."""
    p = _params(hw)
    instrs = _instrs(program)
    n_units = len(isa.UNITS)
    pops: list[list[int]] = [[] for _ in range(n_units)]
    dones: list[list[int]] = [[] for _ in range(n_units)]
    prev: list[Instr | None] = [None] * n_units
    unit_free = [0] * n_units         # earliest start allowed by the unit's previous instr
    last_done = -1                    # latest completion so far (for FENCE/DONE)
    out: list[InstrTiming] = []
    cnt = {"array_busy": 0, "dma_in_busy": 0, "dma_out_busy": 0, "requant_busy": 0,
           "stall": 0}
    dma_intervals: list[tuple[int, int]] = []
    fetch = 0                         # cycle the instruction's beat is accepted into IR
    end = None
    for pc, ins in enumerate(instrs):
        t = fetch + 1                 # IR valid from the cycle after the fetch
        u = ins.unit
        if u is not None:
            j = len(pops[u])
            if j >= QUEUE_DEPTH:      # queue full until entry j-QUEUE_DEPTH leaves
                t = max(t, pops[u][j - QUEUE_DEPTH] + 1)
        elif ins.op in ("FENCE", "DONE"):
            t = max(t, last_done + 1)
        rec = InstrTiming(pc, ins.op, t)
        out.append(rec)
        fetch = t                     # the next beat enters IR in the dispatch cycle
        if ins.op == "DONE":
            end = t
            break
        if u is None:
            continue
        visible = t + 1
        if pops[u]:
            visible = max(visible, pops[u][-1] + 1)
        structural = unit_free[u]
        a = ins.args
        if ins.op == "MATMUL" and prev[u] is not None:
            pk = prev[u]["k"]
            structural = max(structural, pops[u][-1] + pk + p.drain_gap - a["k"])
        dep_ready = 0
        for v, d in enumerate(ins.deps):
            idx = len(pops[v]) - d
            if d and idx >= 0:
                dep_ready = max(dep_ready, dones[v][idx] + 1)
        ready = max(visible, structural)
        start = max(ready, dep_ready)
        if ins.op == "MATMUL" and dep_ready > ready:
            cnt["stall"] += dep_ready - ready
        if ins.op == "LOAD":
            beats = a["count"] * p.beats(a["bank"])
            done = start + beats
            unit_free[u] = done
            cnt["dma_in_busy"] += beats
            dma_intervals.append((start + 1, done))
        elif ins.op == "STORE":
            beats = a["count"] * p.beats(ACC)
            done = start + beats
            unit_free[u] = done
            cnt["dma_out_busy"] += beats
            dma_intervals.append((start + 1, done))
        elif ins.op == "MATMUL":
            done = start + a["k"] + p.matmul_latency
            unit_free[u] = start + a["k"]
            cnt["array_busy"] += a["k"]
        else:  # REQUANT
            done = start + a["rows"] + p.REQUANT_LATENCY
            unit_free[u] = start + a["rows"] + 1
            cnt["requant_busy"] += a["rows"] + 1
        pops[u].append(start)
        dones[u].append(done)
        prev[u] = ins
        last_done = max(last_done, done)
        rec.start, rec.done = start, done
    if end is None:
        raise isa.IsaError("program ends without DONE; the timing model needs a complete "
                           "program")
    cnt["total"] = end + 1
    cnt["dma_busy"] = _union_length(dma_intervals)
    counters = {k: cnt[k] for k in ("total", "array_busy", "dma_in_busy", "dma_out_busy",
                                     "dma_busy", "requant_busy", "stall")}
    return out, counters


def program_cycles(program: Any, hw: HardwareConfig | AccelParams) -> dict[str, int]:
    """Cycle counters of ``program`` (instructions, words or a ``GemmProgram``) on ``hw``.

    Keys (the RTL counter names): ``total`` (start to DONE, host transfers included),
    ``array_busy`` (cycles a k-step enters the array), ``dma_in_busy``/``dma_out_busy``
    (host beats in/out), ``dma_busy`` (cycles with a beat in either direction),
    ``requant_busy`` (REQUANT reading cycles) and ``stall`` (cycles the array's next tile
    was ready to start but waited for a dependency).
    """
    return schedule(program, hw)[1]


def _union_length(intervals: Sequence[tuple[int, int]]) -> int:
    """Cycles covered by inclusive ``(first, last)`` intervals."""
    total, cur_lo, cur_hi = 0, None, None
    for lo, hi in sorted(intervals):
        if cur_hi is None or lo > cur_hi + 1:
            if cur_hi is not None:
                total += cur_hi - cur_lo + 1
            cur_lo, cur_hi = lo, hi
        else:
            cur_hi = max(cur_hi, hi)
    if cur_hi is not None:
        total += cur_hi - cur_lo + 1
    return total


__all__ = ["InstrTiming", "program_cycles", "schedule"]
