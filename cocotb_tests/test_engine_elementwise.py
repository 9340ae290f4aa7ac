"""Runs the VADD and VSQUASH engine testbenches (tb_engine_elementwise.py) on Verilated
engine harnesses (cols = 4)."""

import pytest

from cocotb_tests.engine_harness import args_bits, engine_design
from hw.vector.elementwise import AddEngine, SquashEngine
from sim.rtl.runner import run_cocotb

pytestmark = pytest.mark.rtl

COLS, ROWS = 4, 4


def _run(name: str, factory, op: str, test: str, cases: int):
    design = engine_design(name, factory, args_bits(op), COLS, ROWS, {"engine": op})
    result = run_cocotb(design, "cocotb_tests.tb_engine_elementwise", testcase=test,
                        env={"FOLDACCEL_SEED": "2026", "FOLDACCEL_COLS": str(COLS),
                             "FOLDACCEL_ROWS": str(ROWS), "FOLDACCEL_CASES": str(cases)})
    assert result.ok, result.summary()


def test_add_engine_matches_intops():
    _run("eng_vadd", lambda: AddEngine(COLS, ROWS), "VADD", "add_cases", 30)


def test_squash_engine_matches_intops():
    _run("eng_vsquash", lambda: SquashEngine(COLS, ROWS), "VSQUASH", "squash_cases", 24)
