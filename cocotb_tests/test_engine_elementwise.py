"""Runs the VADD and VSQUASH engine testbenches (tb_engine_elementwise.py) on Verilated
engine harnesses (cols = 4)."""

import pytest

from cocotb_tests.engine_harness import run_engine_tb
from hw.vector.elementwise import AddEngine, SquashEngine

pytestmark = pytest.mark.rtl

COLS, ROWS = 4, 4


def _run(name: str, factory, op: str, test: str, cases: int):
    result = run_engine_tb(name, factory, op, COLS, ROWS, "tb_engine_elementwise", cases,
                           testcase=test)
    assert result.ok, result.summary()


def test_add_engine_matches_intops():
    _run("eng_vadd", lambda: AddEngine(COLS, ROWS), "VADD", "add_cases", 30)


def test_squash_engine_matches_intops():
    _run("eng_vsquash", lambda: SquashEngine(COLS, ROWS), "VSQUASH", "squash_cases", 24)
