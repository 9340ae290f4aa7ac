"""Runs the VLUT engine testbench (tb_engine_lutload.py) on Verilated engine harnesses
(cols = 4, and cols = 3, which does not divide the table sizes)."""

import pytest

from cocotb_tests.engine_harness import run_engine_tb
from hw.vector.lutload import LutLoadEngine

pytestmark = pytest.mark.rtl


@pytest.mark.parametrize("cols,rows", [(4, 4), (3, 5)])
def test_lutload_engine_matches_numpy(cols, rows):
    result = run_engine_tb(f"eng_lutload_c{cols}", lambda: LutLoadEngine(cols, rows), "VLUT",
                           cols, rows, "tb_engine_lutload", 6, expect=["random_loads"])
    assert result.ok, result.summary()
