"""Runs the VSOFTMAX engine testbench (tb_engine_softmax.py) on Verilated engine harnesses
(cols = 4 and cols = 16)."""

import pytest

from cocotb_tests.engine_harness import run_engine_tb
from hw.vector.softmax import SoftmaxEngine

pytestmark = pytest.mark.rtl


@pytest.mark.parametrize("cols,rows,cases", [(4, 4, 40), (16, 4, 20)])
def test_softmax_engine_matches_intops(cols, rows, cases):
    result = run_engine_tb(f"eng_softmax_c{cols}", lambda: SoftmaxEngine(cols, rows),
                           "VSOFTMAX", cols, rows, "tb_engine_softmax", cases,
                           expect=["directed_cases", "random_cases"])
    assert result.ok, result.summary()
