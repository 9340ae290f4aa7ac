"""Runs the MCOPY engine testbench (tb_engine_copy.py) on a Verilated engine harness."""

import pytest

from cocotb_tests.engine_harness import run_engine_tb
from hw.vector.copy import CopyEngine

pytestmark = pytest.mark.rtl


def test_copy_engine_matches_numpy():
    cols, rows = 4, 4
    result = run_engine_tb("eng_copy", lambda: CopyEngine(cols, rows), "MCOPY", cols, rows,
                           "tb_engine_copy", 25, expect=["random_copies"])
    assert result.ok, result.summary()
