"""cocotb testbench of the MCOPY engine (hw/vector/copy.py) in the engine harness.

Seeded random copies VMEM -> VMEM and VMEM -> WGT (lengths 1..40, source strides 1..3, in
place and disjoint ranges); the reference is a numpy gather of the same words (low bytes for
WGT); every
destination word and the untouched neighbours are scoreboarded, and the measured latency
equals ``hw.vector.timing.mcopy_latency``. Environment: FOLDACCEL_SEED, FOLDACCEL_COLS,
FOLDACCEL_ROWS, FOLDACCEL_CASES.
"""

from __future__ import annotations

from types import SimpleNamespace

import cocotb
import numpy as np

from cocotb_tests.engine_harness import (
    DEPTHS,
    EngineDriver,
    int_to_lanes,
    lanes_to_int,
    pack_args,
    testbench_params,
)
from hw.vector.timing import mcopy_latency
from sim.rtl.scoreboard import Scoreboard

SEED, C, R, CASES = testbench_params(cols=4, rows=4, cases=30)


@cocotb.test()
async def random_copies(dut):
    rng = np.random.default_rng(SEED)
    drv = EngineDriver(dut)
    await drv.reset()
    sb = Scoreboard("mcopy.random", SEED)
    span = 128
    for case in range(CASES):
        vmem = rng.integers(-2**15, 2**15, (span, C))
        wgt = rng.integers(0, 256, (span, C))
        for i in range(span):
            drv.write("vmem", i, lanes_to_int(vmem[i], 16))
            drv.write("wgt", i, lanes_to_int(wgt[i], 8))
        count = int(rng.integers(1, 41))
        stride = int(rng.integers(1, 4))
        bank = int(rng.integers(0, 2))
        src = int(rng.integers(0, span - (count - 1) * stride))
        # in place or disjoint (the ISA rule); WGT destinations anywhere
        dst = int(rng.integers(0, span - count))
        if bank == 0 and rng.random() < 0.3:
            dst = src
        elif bank == 0 and dst < src + (count - 1) * stride + 1 and src < dst + count:
            dst = (src + (count - 1) * stride + 1) % (span - count)
            if dst < src + (count - 1) * stride + 1 and src < dst + count:
                dst = src
        want_v, want_w = vmem.copy(), wgt.copy()
        source = vmem[src + np.arange(count) * stride].copy()
        if bank == 0:
            want_v[dst:dst + count] = source
        else:
            want_w[dst:dst + count] = source & 0xFF
        cycles = await drv.run(pack_args("MCOPY", src=src, dst=dst, count=count, bank=bank,
                                         stride=stride))
        where = f"case {case} (src={src} dst={dst} count={count} bank={bank} stride={stride})"
        sb.compare(f"{where} latency", mcopy_latency(SimpleNamespace(count=count), None),
                   cycles)
        for i in range(span):
            got_v = int_to_lanes(drv.read("vmem", i), 16, C)
            got_w = int_to_lanes(drv.read("wgt", i), 8, C, signed=False)
            sb.compare(f"{where} VMEM[{i}]", [int(x) for x in want_v[i]], got_v)
            sb.compare(f"{where} WGT[{i}]", [int(x) for x in want_w[i]], got_w)
    assert DEPTHS["vmem"] >= span
    sb.check(min_compared=CASES * (2 * span + 1))
