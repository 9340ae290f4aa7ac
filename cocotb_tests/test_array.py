"""Runs the systolic-array and requantizer unit testbenches on their Verilated designs."""

import pytest

from sim.rtl.designs import array_design, requant_design
from sim.rtl.runner import run_cocotb

pytestmark = pytest.mark.rtl


def test_array_4x3_matches_numpy():
    """A non-square array catches row/column mix-ups; 60 random tiles plus corners."""
    env = {"FOLDACCEL_SEED": "2026", "FOLDACCEL_ROWS": "4", "FOLDACCEL_COLS": "3",
           "FOLDACCEL_TILES": "60"}
    result = run_cocotb(array_design(4, 3), "cocotb_tests.tb_array", env=env)
    assert {t.name for t in result.tests} == {"random_tiles", "corners"}
    assert result.ok, result.summary()


def test_requantizer_matches_intops():
    env = {"FOLDACCEL_SEED": "2026", "FOLDACCEL_LANES": "3", "FOLDACCEL_VECTORS": "3000"}
    result = run_cocotb(requant_design(3), "cocotb_tests.tb_requant", env=env)
    assert {t.name for t in result.tests} == {"random_params", "corners"}
    assert result.ok, result.summary()


@pytest.mark.slow
@pytest.mark.parametrize("rows,cols", [(1, 1), (2, 5), (6, 2), (8, 8)])
def test_array_shapes(rows, cols):
    env = {"FOLDACCEL_SEED": str(rows * 100 + cols), "FOLDACCEL_ROWS": str(rows),
           "FOLDACCEL_COLS": str(cols), "FOLDACCEL_TILES": "80"}
    result = run_cocotb(array_design(rows, cols), "cocotb_tests.tb_array", env=env)
    assert result.ok, result.summary()
