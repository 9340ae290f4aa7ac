"""Rooflines of GEMMs and layer steps, and the ``gemm-roofline`` benchmark.

The roofline of a program is the largest of three bounds no schedule can beat:

* the array-tile bound: ``ceil(M/rows) * ceil(N/cols) * K`` cycles per GEMM (one K step per
  cycle per output tile of the output-stationary array);
* data in: every input byte crossing the host link once (A, B, bias and requantization
  parameters) at ``host_bytes_per_cycle``;
* data out: every output byte crossing it once.

A GEMM also has a *fill/drain bound* (:func:`gemm_fill_drain_bound`), which no schedule on
this hardware can beat either: no result leaves before a first tile has all of its K words
of A and B (``K * (beats per ACT word + beats per WGT word)``) and the array's latency, and
then every output beat still has to leave; after the last input beat, its tile still needs
the array's latency and its own STORE; and the array's k-steps cannot start before one word
of A and one of B arrived, nor the last tile's STORE before the latency after them. On small GEMMs it is well above the roofline: it says
how much of a miss is pipeline fill and drain rather than scheduling.

``gemm-roofline`` divides the estimator's cycles (equal to the RTL's counters; the RTL tests
assert it) by the roofline for a grid of shapes on 8x8, 16x16 and 32x32 arrays. Targets (issue
13): <= 1.10 when M and N are at least the array size, <= 1.25 otherwise.
"""

from __future__ import annotations

import dataclasses

from sim.bench import benchmark

#: (label, M, K, N) of the grid: small, skinny, large, non-multiples.
SHAPES = [
    ("small", 16, 64, 64), ("small", 32, 32, 32),
    ("skinny", 1, 512, 512), ("skinny", 5, 512, 2048), ("skinny", 512, 512, 16),
    ("large", 256, 256, 256), ("large", 512, 512, 512),
    ("odd", 37, 100, 23), ("odd", 200, 300, 150), ("odd", 100, 1000, 60),
]
ARRAYS = (8, 16, 32)
TARGET_FULL, TARGET_OTHER = 1.10, 1.25


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def array_bound(gemms, rows: int, cols: int) -> int:
    """Cycles the array needs for ``(M, K, N)`` GEMMs: one K-step per cycle per output tile."""
    return sum(cdiv(m, rows) * cdiv(n, cols) * k for m, k, n in gemms)


def roofline(array: int, bytes_in: int, bytes_out: int, host_bytes_per_cycle: int
             ) -> tuple[int, str]:
    """``(bound, which)``: the largest of the array bound and the host transfers."""
    bounds = {"array": array, "data in": cdiv(bytes_in, host_bytes_per_cycle),
              "data out": cdiv(bytes_out, host_bytes_per_cycle)}
    which = max(bounds, key=bounds.get)
    return bounds[which], which


def gemm_roofline(m: int, k: int, n: int, hw, *, bias: bool = False,
                  requant: bool = False) -> tuple[int, str]:
    """The roofline of one GEMM program on ``hw`` (module docstring)."""
    bytes_in = m * k + k * n + 4 * n * bias + 4 * n * requant
    bytes_out = m * n * (1 if requant else 4)
    return roofline(array_bound([(m, k, n)], hw.rows, hw.cols), bytes_in, bytes_out,
                    hw.host_bytes_per_cycle)


def gemm_fill_drain_bound(m: int, k: int, n: int, hw, *, bias: bool = False,
                          requant: bool = False) -> int:
    """The fill/drain lower bound of one GEMM program on ``hw`` (module docstring): the
    largest of the roofline, the first tile's operands + latency + all output, all input +
    latency + the smallest tile's STORE, and the first words + the array's k-steps + latency
    + that STORE."""
    from hw.uarch import ACC, ACT, ROWS_PER_ACC_WORD, WGT, as_params

    p = as_params(hw)
    hb = p.host_bytes
    bound, _ = gemm_roofline(m, k, n, hw, bias=bias, requant=requant)
    bytes_in = m * k + k * n + 4 * n * bias + 4 * n * requant
    bytes_out = m * n * (1 if requant else 4)
    lat = p.matmul_latency
    first = k * (p.beats(ACT) + p.beats(WGT)) + lat + cdiv(bytes_out, hb)
    m_min = min(m, m % p.rows or p.rows)
    words = cdiv(m_min, ROWS_PER_ACC_WORD) if requant else m_min
    store = words * p.beats(ACC)
    last = cdiv(bytes_in, hb) + lat + store
    array = (p.beats(ACT) + p.beats(WGT)
             + array_bound([(m, k, n)], p.rows, p.cols) + lat + store)
    return max(bound, first, last, array)


@benchmark("gemm-roofline")
def gemm_roofline_bench():
    from model.config import HardwareConfig
    from sim.perf.estimate import estimate_gemm

    rows = []
    for size in ARRAYS:
        hw = dataclasses.replace(HardwareConfig(), rows=size, cols=size)
        for label, m, k, n in SHAPES:
            cycles = estimate_gemm(m, k, n, hw)["cycles"]
            bound, which = gemm_roofline(m, k, n, hw)
            fill = gemm_fill_drain_bound(m, k, n, hw)
            target = TARGET_FULL if m >= size and n >= size else TARGET_OTHER
            ratio = cycles / bound
            rows.append([f"{size}x{size}", f"{label} {m}x{k}x{n}", f"{cycles:,}",
                         f"{bound:,} ({which})", f"{ratio:.2f}", f"{target:.2f}",
                         "yes" if ratio <= target else "no", f"{fill:,}",
                         f"{cycles / fill:.2f}"])
    return ("GEMM cycles (estimator == RTL counters) vs roofline, int32 output, 16 B/cycle "
            "host link; fill/drain: the bound with the first tile's operands and the last "
            "tile's latency and STORE", ["array", "GEMM", "cycles", "roofline", "ratio",
                                         "target", "met", "fill/drain bound",
                                         "ratio to it"], rows)


__all__ = ["array_bound", "gemm_fill_drain_bound", "gemm_roofline", "roofline"]
