"""Runs the MTRANS engine testbench (tb_engine_transpose.py) on Verilated engine harnesses:
rows > cols (3 columns, 5-byte ACT words) and rows < cols (4 columns, 2-byte ACT words)."""

import pytest

from cocotb_tests.engine_harness import run_engine_tb
from hw.vector.transpose import TransposeEngine

pytestmark = pytest.mark.rtl


@pytest.mark.parametrize("cols,rows", [(3, 5), (4, 2)])
def test_transpose_engine_matches_numpy(cols, rows):
    result = run_engine_tb(f"eng_transpose_c{cols}r{rows}",
                           lambda: TransposeEngine(cols, rows), "MTRANS", cols, rows,
                           "tb_engine_transpose", 40, expect=["directed_cases", "random_cases"])
    assert result.ok, result.summary()
