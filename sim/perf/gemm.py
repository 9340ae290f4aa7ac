"""Counts of one GEMM: the compiler's program, timed by the accelerator's timing model.

:func:`gemm_counts_reference` compiles ``(M x K) @ (K x N)`` with
:func:`hw.compiler.compile_gemm` (requantized to int8, optional bias and ReLU — what every GEMM
of a layer step does), takes the cycle counters of :func:`hw.timing.program_cycles` (equal to
the RTL's counters) and reads the SRAM and host traffic off the instructions
(:mod:`sim.perf.program`). :func:`gemm_counts_uncached` returns the same numbers (tested field
by field, tests/test_fast_gemm.py) from :mod:`sim.perf.fastgemm`, which streams the same
compiler and timing rules block by block and jumps over the periods where their state
repeats.

Even so a large GEMM takes a noticeable time, so :func:`gemm_counts` caches the result twice:
in memory, and on disk under ``perf/gemm`` (:mod:`sim.perf.diskcache`), keyed by the GEMM and
the micro-architecture parameters it depends on.
"""

from __future__ import annotations

import dataclasses
import functools

from model.config import HardwareConfig
from sim.perf.counts import RTL_BUSY, Counts
from sim.perf.diskcache import disk_cached, memoized
from sim.perf.program import timed_counts


def rtl_counters(c: Counts) -> dict[str, int]:
    """The RTL performance counters (hw/accel.py names) of a program's :class:`Counts`."""
    return {"total": c.cycles, **{key: c.busy[unit] for key, unit in RTL_BUSY.items()},
            "stall": c.stall}


def program_counts(program, hw: HardwareConfig, *, macs: int, weight: bool) -> Counts:
    """Counts of a compiled program: cycles from the timing model, traffic from its
    instructions. ``weight``: the WGT-bank loads are weights (else activations, e.g. K^T);
    ACC-bank loads (bias and requant parameter words) always count as weights."""
    from hw.isa import instructions
    c, loads = timed_counts(instructions(program), hw)
    c.macs = macs
    c.weight_loads["acc"] = loads["acc"]
    c.weight_loads["wgt"] = loads["wgt"] if weight else 0
    c.host_in_bytes = loads["act"] + (0 if weight else loads["wgt"])
    return c


def _weight_split(c: Counts, *, bias: bool, weight: bool, requant: bool) -> Counts:
    if bias and not weight:
        # The bias of an activation GEMM (P@V's zero-point bias, 128 * colsum(V)) is computed
        # every step, so its words are activations: each constant LOAD carries one bias word
        # and, with requant, one parameter word per column tile.
        act_bias = c.weight_loads["acc"] // (2 if requant else 1)
        c.weight_loads["acc"] -= act_bias
        c.host_in_bytes += act_bias
    return c


def gemm_counts_reference(m: int, k: int, n: int, hw: HardwareConfig, *, bias: bool,
                          weight: bool = True, requant: bool = True,
                          relu: bool = False) -> Counts:
    """:func:`gemm_counts_uncached` the slow way: compile the whole program
    (:func:`hw.compiler.compile_gemm`) and time it instruction by instruction. The reference
    the fast path (:mod:`sim.perf.fastgemm`) is tested against."""
    from hw.compiler import compile_gemm
    prog = compile_gemm(m, k, n, hw, bias=bias, requant=requant, relu=relu)
    c = program_counts(prog, hw, macs=m * k * n, weight=weight)
    return _weight_split(c, bias=bias, weight=weight, requant=requant)


def gemm_counts_uncached(m: int, k: int, n: int, hw: HardwareConfig, *, bias: bool,
                         weight: bool = True, requant: bool = True,
                         relu: bool = False) -> Counts:
    """Counts of the program :func:`hw.compiler.compile_gemm` makes for the GEMM, now (no
    cache). ``weight``: B is a weight matrix; else B and the bias (if any) are activations.
    Computed by :func:`sim.perf.fastgemm.fast_program_counts` (the same numbers as
    :func:`gemm_counts_reference`, without timing every repeated block)."""
    from sim.perf.fastgemm import fast_program_counts
    c, loads = fast_program_counts(m, k, n, hw, bias=bias, requant=requant, relu=relu)
    c.macs = m * k * n
    c.weight_loads["acc"] = loads["acc"]
    c.weight_loads["wgt"] = loads["wgt"] if weight else 0
    c.host_in_bytes = loads["act"] + (0 if weight else loads["wgt"])
    return _weight_split(c, bias=bias, weight=weight, requant=requant)


@functools.lru_cache(maxsize=4096)
def _cached(gemm: tuple, params, hw: HardwareConfig) -> Counts:
    m, k, n, bias, weight, requant, relu = gemm
    return disk_cached(
        "gemm", {"gemm": list(gemm), "params": dataclasses.asdict(params)},
        lambda: gemm_counts_uncached(m, k, n, hw, bias=bias, weight=weight, requant=requant,
                                     relu=relu),
        Counts.to_dict, lambda d: Counts(**d))


def gemm_counts(m: int, k: int, n: int, hw: HardwareConfig, *, bias: bool,
                weight: bool = True, requant: bool = True, relu: bool = False) -> Counts:
    """:func:`gemm_counts_uncached`, cached in memory and on disk (see the module docstring).
    The returned :class:`Counts` must not be mutated (it is shared)."""
    from hw.uarch import as_params
    params = as_params(hw)
    # only the micro-architecture matters: normalise the rest of hw for the memory cache
    return memoized(_cached, (m, k, n, bias, weight, requant, relu), params, timing_hw(hw))


def timing_hw(hw: HardwareConfig) -> HardwareConfig:
    """``hw`` without the fields programs and their counts do not depend on (clock, DRAM
    rate): the key of the estimate caches."""
    return dataclasses.replace(hw, clock_mhz=1.0, dram_bytes_per_cycle=1)
