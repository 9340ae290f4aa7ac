"""Runs the MCOPY engine testbench (tb_engine_copy.py) on a Verilated engine harness."""

import pytest

from cocotb_tests.engine_harness import args_bits, engine_design
from hw.vector.copy import CopyEngine
from sim.rtl.runner import run_cocotb

pytestmark = pytest.mark.rtl


def test_copy_engine_matches_numpy():
    cols, rows = 4, 4
    design = engine_design("eng_copy", lambda: CopyEngine(cols, rows), args_bits("MCOPY"),
                           cols, rows, {"engine": "MCOPY"})
    result = run_cocotb(design, "cocotb_tests.tb_engine_copy",
                        env={"FOLDACCEL_SEED": "2026", "FOLDACCEL_COLS": str(cols),
                             "FOLDACCEL_ROWS": str(rows), "FOLDACCEL_CASES": "25"},
                        expect=["random_copies"])
    assert result.ok, result.summary()
