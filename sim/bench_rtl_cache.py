"""Benchmark: what the Verilog/Verilator build cache saves on a PE testbench run."""

from __future__ import annotations

import os
import tempfile
import time

from sim.bench import benchmark


@benchmark("rtl-cache")
def rtl_cache():
    """Cold run (fresh build dir: Verilog + Verilator build + sim) vs a cached run."""
    from sim.designs import pe_design
    from sim.rtl import run_cocotb

    env = {"FOLDACCEL_SEED": "1", "FOLDACCEL_PE_CYCLES": "2000"}
    saved = os.environ.get("FOLDACCEL_BUILD_DIR")
    with tempfile.TemporaryDirectory(prefix="foldaccel-bench-") as tmp:
        os.environ["FOLDACCEL_BUILD_DIR"] = tmp
        try:
            t0 = time.monotonic()
            cold = run_cocotb(pe_design(), "cocotb_tests.tb_pe", env=env)
            t1 = time.monotonic()
            warm = run_cocotb(pe_design(), "cocotb_tests.tb_pe", env=env)
            t2 = time.monotonic()
        finally:
            if saved is None:
                os.environ.pop("FOLDACCEL_BUILD_DIR", None)
            else:
                os.environ["FOLDACCEL_BUILD_DIR"] = saved
    assert cold.ok and warm.ok, (cold.summary(), warm.summary())
    rows = [["cold (generate + build + run)", round(t1 - t0, 2), 1.0],
            ["cached (run only)", round(t2 - t1, 2), round((t1 - t0) / (t2 - t1), 1)]]
    return "PE testbench: build cache", ["run", "wall s", "speed-up"], rows
