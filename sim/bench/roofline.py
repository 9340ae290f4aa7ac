"""The ``gemm-roofline`` benchmark (the bounds themselves: :mod:`hw.bounds`).

``gemm-roofline`` divides the estimator's cycles (equal to the RTL's counters; the RTL tests
assert it) by the roofline -- the largest of the array-tile bound, the input bytes and the
output bytes over the host link -- for a grid of shapes on 8x8, 16x16 and 32x32 arrays, and
prints the fill/drain bound beside it (on small GEMMs it is well above the roofline: it says
how much of a miss is pipeline fill and drain rather than scheduling). Targets (issue 13):
<= 1.10 when M and N are at least the array size, <= 1.25 otherwise.
"""

from __future__ import annotations

import dataclasses

from hw.bounds import gemm_fill_drain_bound, gemm_roofline
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
