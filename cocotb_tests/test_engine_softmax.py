"""Runs the VSOFTMAX engine testbench (tb_engine_softmax.py) on Verilated engine harnesses
(cols = 4 and cols = 16)."""

import pytest

from cocotb_tests.engine_harness import args_bits, engine_design
from hw.vector.softmax import SoftmaxEngine
from sim.rtl.runner import run_cocotb

pytestmark = pytest.mark.rtl


@pytest.mark.parametrize("cols,rows,cases", [(4, 4, 40), (16, 4, 20)])
def test_softmax_engine_matches_intops(cols, rows, cases):
    design = engine_design(f"eng_softmax_c{cols}", lambda: SoftmaxEngine(cols, rows),
                           args_bits("VSOFTMAX"), cols, rows, {"engine": "VSOFTMAX"})
    result = run_cocotb(design, "cocotb_tests.tb_engine_softmax",
                        env={"FOLDACCEL_SEED": "2026", "FOLDACCEL_COLS": str(cols),
                             "FOLDACCEL_ROWS": str(rows), "FOLDACCEL_CASES": str(cases)},
                        expect=["directed_cases", "random_cases"])
    assert result.ok, result.summary()
