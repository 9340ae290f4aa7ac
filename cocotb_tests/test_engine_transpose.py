"""Runs the MTRANS engine testbench (tb_engine_transpose.py) on Verilated engine harnesses:
rows > cols (3 columns, 5-byte ACT words) and rows < cols (4 columns, 2-byte ACT words)."""

import pytest

from cocotb_tests.engine_harness import args_bits, engine_design
from hw.vector.transpose import TransposeEngine
from sim.rtl.runner import run_cocotb

pytestmark = pytest.mark.rtl


@pytest.mark.parametrize("cols,rows", [(3, 5), (4, 2)])
def test_transpose_engine_matches_numpy(cols, rows):
    design = engine_design(f"eng_transpose_c{cols}r{rows}", lambda: TransposeEngine(cols, rows),
                           args_bits("MTRANS"), cols, rows, {"engine": "MTRANS"})
    result = run_cocotb(design, "cocotb_tests.tb_engine_transpose",
                        env={"FOLDACCEL_SEED": "2026", "FOLDACCEL_COLS": str(cols),
                             "FOLDACCEL_ROWS": str(rows), "FOLDACCEL_CASES": "40"},
                        expect=["directed_cases", "random_cases"])
    assert result.ok, result.summary()
