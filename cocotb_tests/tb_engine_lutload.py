"""cocotb testbench of the VLUT engine (hw/vector/lutload.py) in the engine harness.

Seeded random VMEM images and table loads, ELUT (table 0, 256 entries) and RLUT (table 1,
192 entries) alternately, from random ``src``. Both LUT memories are preloaded with random
garbage; the reference is plain numpy indexing (entry ``i`` = the raw 16 bits of lane
``i % cols`` of word ``src + i // cols``). Every entry of both tables is read back from the
harness memories and scoreboarded (the other table must be unchanged), with the VMEM words
(unchanged) and the latency (``hw.vector.latency_softmax_mover.vlut_latency``).
Environment: FOLDACCEL_SEED, FOLDACCEL_COLS, FOLDACCEL_ROWS, FOLDACCEL_CASES.
"""

from __future__ import annotations

from types import SimpleNamespace

import cocotb
import numpy as np

from cocotb_tests.engine_harness import (
    EngineDriver,
    int_to_lanes,
    lanes_to_int,
    pack_args,
    testbench_params,
)
from hw.vector.formats import ELUT_SIZE, RLUT_SIZE
from hw.vector.latency_softmax_mover import vlut_latency
from sim.rtl.scoreboard import Scoreboard

SEED, C, R, CASES = testbench_params(cols=4, rows=4, cases=6)
SIZES = {"elut": ELUT_SIZE, "rlut": RLUT_SIZE}


@cocotb.test()
async def random_loads(dut):
    rng = np.random.default_rng(SEED)
    drv = EngineDriver(dut)
    await drv.reset()
    sb = Scoreboard(f"vlut.random.c{C}", SEED)
    span = 2 * (-(-ELUT_SIZE // C)) + 16
    for case in range(CASES):
        table = case % 2
        name = ("elut", "rlut")[table]
        words = -(-SIZES[name] // C)
        vmem = rng.integers(-2**15, 2**15, (span, C))
        src = int(rng.integers(0, span - words + 1))
        for i in range(span):
            drv.write("vmem", i, lanes_to_int(vmem[i], 16))
        want = {k: rng.integers(0, 2**16, n) for k, n in SIZES.items()}
        for k, v in want.items():
            for i, x in enumerate(v):
                drv.write(k, i, int(x))
        want[name] = (vmem[src:src + words].reshape(-1)[:SIZES[name]] & 0xFFFF)
        a = SimpleNamespace(table=table, src=src)
        cycles = await drv.run(pack_args("VLUT", table=table, src=src))
        where = f"case {case} (table={table} src={src})"
        sb.compare(f"{where} latency", vlut_latency(a, SimpleNamespace(cols=C, rows=R)), cycles)
        for k, v in want.items():
            for i in range(len(v)):
                sb.compare(f"{where} {k.upper()}[{i}]", int(v[i]), drv.read(k, i))
        for i in range(span):
            sb.compare(f"{where} VMEM[{i}]", [int(x) for x in vmem[i]],
                       int_to_lanes(drv.read("vmem", i), 16, C))
    sb.check(min_compared=CASES * (ELUT_SIZE + RLUT_SIZE + span + 1))
