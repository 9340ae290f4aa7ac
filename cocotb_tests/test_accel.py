"""Runs the program-level accelerator testbench (tb_accel.py) on two Verilated builds: the
small non-square array (4x3, 1 KiB banks, 8-byte host beats) and the default 16x16 array."""

import pytest

from model.config import Config, HardwareConfig
from sim.rtl.designs import SMALL_HW, accel_design
from sim.rtl.runner import run_cocotb

pytestmark = pytest.mark.rtl


def _run(hw: HardwareConfig, suite: str, seed: int, n_random: int, testcase=None):
    env = {"FOLDACCEL_CONFIG": Config(hardware=hw).to_toml(), "FOLDACCEL_SEED": str(seed),
           "FOLDACCEL_SUITE": suite, "FOLDACCEL_RANDOM": str(n_random)}
    return run_cocotb(accel_design(hw), "cocotb_tests.tb_accel", env=env, testcase=testcase)


def test_small_array_programs():
    result = _run(HardwareConfig(**SMALL_HW), "small", seed=2026, n_random=16)
    assert {t.name for t in result.tests} == {"corners", "random_shapes",
                                              "malformed_instructions", "watchdog",
                                              "timing_probes"}
    assert result.ok, result.summary()


def test_default_array_programs():
    result = _run(HardwareConfig(), "default", seed=2026, n_random=6,
                  testcase=["corners", "random_shapes", "watchdog"])
    assert {t.name for t in result.tests} == {"corners", "random_shapes", "watchdog"}
    assert result.ok, result.summary()


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(1, 6))
def test_small_array_many_seeds(seed):
    result = _run(HardwareConfig(**SMALL_HW), "small", seed=seed, n_random=60)
    assert result.ok, result.summary()


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(1, 3))
def test_default_array_many_seeds(seed):
    # the hand-timed probes are written for the small array (its suite runs them)
    result = _run(HardwareConfig(), "default", seed=seed, n_random=30,
                  testcase=["corners", "random_shapes", "watchdog"])
    assert result.ok, result.summary()
