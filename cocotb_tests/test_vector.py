"""Runs the vector-unit / mover program testbench (tb_vector.py) on the same two Verilated
builds as the GEMM programs: the small 4x3 array and the default 16x16."""

import pytest

from model.config import Config, HardwareConfig
from sim.rtl.designs import SMALL_HW, accel_design
from sim.rtl.runner import run_cocotb

pytestmark = pytest.mark.rtl

TESTS = ["layernorm", "softmax", "elementwise", "movement", "random_programs", "port_conflict"]


def _run(hw: HardwareConfig, suite: str, seed: int, n_random: int):
    env = {"FOLDACCEL_CONFIG": Config(hardware=hw).to_toml(), "FOLDACCEL_SEED": str(seed),
           "FOLDACCEL_SUITE": suite, "FOLDACCEL_RANDOM": str(n_random)}
    return run_cocotb(accel_design(hw), "cocotb_tests.tb_vector", env=env, expect=TESTS)


def test_small_array_vector_programs():
    result = _run(HardwareConfig(**SMALL_HW), "small", seed=2026, n_random=8)
    assert result.ok, result.summary()


def test_default_array_vector_programs():
    result = _run(HardwareConfig(), "default", seed=2026, n_random=4)
    assert result.ok, result.summary()


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(1, 4))
def test_small_array_vector_many_seeds(seed):
    result = _run(HardwareConfig(**SMALL_HW), "small", seed=seed, n_random=30)
    assert result.ok, result.summary()
