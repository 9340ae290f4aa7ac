"""Runs the VLUT engine testbench (tb_engine_lutload.py) on Verilated engine harnesses
(cols = 4, and cols = 3, which does not divide the table sizes)."""

import pytest

from cocotb_tests.engine_harness import args_bits, engine_design
from hw.vector.lutload import LutLoadEngine
from sim.rtl.runner import run_cocotb

pytestmark = pytest.mark.rtl


@pytest.mark.parametrize("cols,rows", [(4, 4), (3, 5)])
def test_lutload_engine_matches_numpy(cols, rows):
    design = engine_design(f"eng_lutload_c{cols}", lambda: LutLoadEngine(cols, rows),
                           args_bits("VLUT"), cols, rows, {"engine": "VLUT"})
    result = run_cocotb(design, "cocotb_tests.tb_engine_lutload",
                        env={"FOLDACCEL_SEED": "2026", "FOLDACCEL_COLS": str(cols),
                             "FOLDACCEL_ROWS": str(rows), "FOLDACCEL_CASES": "6"},
                        expect=["random_loads"])
    assert result.ok, result.summary()
