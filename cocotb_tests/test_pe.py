"""Runs the MAC PE testbench (cocotb_tests/tb_pe.py) on the Verilated PE."""

import pytest

from sim.rtl.designs import pe_design
from sim.rtl.runner import run_cocotb

pytestmark = pytest.mark.rtl


@pytest.mark.parametrize("seed", [2026])
def test_pe_matches_numpy(seed):
    result = run_cocotb(pe_design(), "cocotb_tests.tb_pe",
                        env={"FOLDACCEL_SEED": str(seed), "FOLDACCEL_PE_CYCLES": "8000"})
    assert {t.name for t in result.tests} == {"random_stream", "corners"}
    assert result.ok, result.summary()


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(1, 9))
def test_pe_many_seeds(seed):
    result = run_cocotb(pe_design(), "cocotb_tests.tb_pe",
                        env={"FOLDACCEL_SEED": str(seed), "FOLDACCEL_PE_CYCLES": "30000"})
    assert result.ok, result.summary()


def test_waveforms_on_request(tmp_path):
    """waves_path leaves a waveform there (FST when lz4 headers exist, VCD otherwise)."""
    from sim.rtl.runner import waves_format
    from sim.rtl.toolchain import activate

    fmt = waves_format(activate())
    want = tmp_path / f"pe.{fmt}"
    result = run_cocotb(pe_design(), "cocotb_tests.tb_pe", testcase="random_stream",
                        env={"FOLDACCEL_PE_CYCLES": "50"}, waves_path=want)
    assert result.ok, result.summary()
    assert result.waves_file == want
    assert result.waves_file.stat().st_size > 0
    plain = run_cocotb(pe_design(), "cocotb_tests.tb_pe", testcase="random_stream",
                       env={"FOLDACCEL_PE_CYCLES": "50"})
    assert plain.waves_file is None
