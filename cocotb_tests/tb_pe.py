"""cocotb testbench of hw.pe.MacPE: driver -> DUT -> monitor -> scoreboard vs reference model.

The driver, monitor, numpy reference and the seeded random stream (test ``random_stream``)
are the RTL flow's self-check, ``sim/rtl/pe_check.py``; this module adds the corner cases.
Parameters arrive as environment variables: FOLDACCEL_SEED (stimulus seed) and
FOLDACCEL_PE_CYCLES (length of the random phase).
"""

from __future__ import annotations

from collections.abc import Iterator

import cocotb
import numpy as np

from sim.rtl.pe_check import SEED, Beat, random_stream, run_beats

__all__ = ["random_stream"]  # re-exported: cocotb collects the tests of this module


def corner_beats(rng: np.random.Generator) -> Iterator[Beat]:
    # a long run of the largest product, started by a clear
    yield Beat(-128, -128, 1, 1)
    for _ in range(3000):
        yield Beat(-128, -128, 1, 0)
    # the most negative products, then a clear in the middle of a run
    for _ in range(500):
        yield Beat(-128, 127, 1, 0)
    yield Beat(127, 127, 1, 1)
    for _ in range(200):
        yield Beat(127, -128, 1, 0)
    # back-to-back clears, with and without valid
    for v in (1, 0, 1, 1, 0, 0, 1):
        yield Beat(-128, -128, v, 1)
    for _ in range(50):
        yield Beat(int(rng.integers(-128, 128)), -128, 1, 0)
    # clear without valid zeroes; valid without clear then accumulates from zero
    yield Beat(5, 5, 0, 1)
    for _ in range(20):
        yield Beat(0, 0, 0, 0)
    for k in range(-128, 128):
        yield Beat(k, k, 1, int(k % 17 == 0))


@cocotb.test()
async def corners(dut):
    """Long -128 x -128 runs, extreme products, clears mid-run and back to back."""
    sb = await run_beats(dut, list(corner_beats(np.random.default_rng(SEED + 1))), "pe.corners")
    sb.check(min_compared=4000)
