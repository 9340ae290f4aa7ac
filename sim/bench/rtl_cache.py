"""Benchmark: what the Verilog/Verilator build cache saves on a PE testbench run."""

from __future__ import annotations

import time

from sim.bench import benchmark


@benchmark("rtl-cache")
def rtl_cache():
    """Cold run (fresh build dir: Verilog + Verilator build + sim) vs a cached run."""
    from sim.rtl.designs import pe_design
    from sim.rtl.runner import fresh_build_root, run_cocotb

    env = {"FOLDACCEL_SEED": "1", "FOLDACCEL_PE_CYCLES": "2000"}
    with fresh_build_root("foldaccel-bench-"):
        t0 = time.monotonic()
        cold = run_cocotb(pe_design(), "sim.rtl.pe_check", env=env)
        t1 = time.monotonic()
        warm = run_cocotb(pe_design(), "sim.rtl.pe_check", env=env)
        t2 = time.monotonic()
    assert cold.ok and warm.ok, (cold.summary(), warm.summary())
    rows = [["cold (generate + build + run)", round(t1 - t0, 2), 1.0],
            ["cached (run only)", round(t2 - t1, 2), round((t1 - t0) / (t2 - t1), 1)]]
    return "PE testbench: build cache", ["run", "wall s", "speed-up"], rows
